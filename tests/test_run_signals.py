"""``wsload run`` as a process: SIGINT/SIGTERM keep a complete report (exit 130); a report that
cannot be written gives exit 3 and leaves no partial file."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import scaled
from jsonschema import Draft202012Validator

from runner.cli import main

ROOT = Path(__file__).resolve().parent.parent
LONG_SLEEP = ROOT / "tests" / "failing" / "long_sleep.yaml"
SMOKE = ROOT / "scenarios" / "smoke.yaml"
REPORT_SCHEMA = json.loads((ROOT / "runner" / "schemas" / "report.schema.json").read_text())


def _start(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(LONG_SLEEP),
            "--verbose",
            "--report-dir",
            str(tmp_path / "reports"),
            "--json",
            str(tmp_path / "r.json"),
            "--junit",
            str(tmp_path / "r.xml"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_sleep_writes_interrupted_report(tmp_path: Path, sig: signal.Signals) -> None:
    """A signal during a long sleep step: exit 130, and complete JSON/JUnit reports marked interrupted."""
    proc = _start(tmp_path)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "running" in line, line
    time.sleep(scaled(0.5))  # the round trip before the sleep takes milliseconds
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=scaled(20))
    assert proc.returncode == 130, err
    assert out.splitlines()[-1].startswith("INTERRUPTED long sleep")
    doc = json.loads((tmp_path / "r.json").read_text())
    Draft202012Validator(REPORT_SCHEMA).validate(doc)
    assert doc["interrupted"] is True and doc["passed"] is False and doc["exit_code"] == 130
    assert doc["error"] == "interrupted during step 'long sleep' (line 14)"
    counts = {s["name"]: s["count"] for s in doc["steps"]}
    assert counts == {"open main": 1, "write main": 1, "read main": 1, "long sleep": 0, "close main": 0}
    assert doc["steps"][2]["latency_ms"]["max"] > 0
    xml = (tmp_path / "r.xml").read_text()
    assert '<error message="interrupted" type="Interrupted">' in xml
    assert len(list((tmp_path / "reports").iterdir())) == 2


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # Python ignores SIGXFSZ: writes get EFBIG


def test_report_write_failure_exits_3_without_partial_file(tmp_path: Path) -> None:
    """When a report cannot be written (file size limit, like a full disk) the exit is 3 and no
    partial or temporary file is left behind."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(SMOKE),
            "--report-dir",
            "",
            "--json",
            str(tmp_path / "r.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=scaled(30),
    )
    assert proc.returncode == 3, proc.stderr
    assert f"cannot write report {tmp_path / 'r.json'}: File too large" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_dir_that_is_a_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A report directory that cannot be created is a could-not-run error (exit 3)."""
    blocker = tmp_path / "reports"
    blocker.write_text("not a directory")
    assert main(["run", str(SMOKE), "--report-dir", str(blocker), "--quiet"]) == 3
    assert "cannot write report" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["reports"]


def _until(condition: Callable[[], bool], what: str, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + scaled(within_s)
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask & (1 << (sig - 1)))


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _wsload(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", *args, "--report-dir", "", "--json", str(tmp_path / "j")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command: Ctrl-C reaches all
    )


def test_sigterm_while_starting_up_is_an_interrupt(tmp_path: Path) -> None:
    """SIGTERM the moment wsload can catch it (it is still importing and parsing): exit 130 with
    one line saying nothing ran, no traceback (it used to die with 143 and say nothing)."""
    proc = _wsload(tmp_path, str(SMOKE))
    _until(lambda: _catches(proc.pid, signal.SIGTERM) or proc.poll() is not None, "a SIGTERM handler")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=scaled(30))
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "wsload: interrupted" in err, err


def test_ctrl_c_while_workers_start_leaves_no_traceback(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group) while the two worker processes are still
    importing: every process ends quietly, exit 130 and no traceback from any of them (the
    workers used to print a KeyboardInterrupt traceback from their bootstrap each)."""
    proc = _wsload(tmp_path, str(SMOKE), "--vus", "2", "--duration", "5s", "--workers", "2")
    _until(lambda: len(_children(proc.pid)) >= 2 or proc.poll() is not None, "two worker processes")
    time.sleep(0.1)  # they import for about 0.4 s
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=scaled(30))
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
