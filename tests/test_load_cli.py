"""``wsload run`` as a load test from the command line: options, exit codes, SIGINT, reports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import scaled
from jsonschema import Draft202012Validator

from runner.cli import main

ROOT = Path(__file__).resolve().parent.parent
REPORT_SCHEMA = json.loads((ROOT / "runner" / "schemas" / "report.schema.json").read_text())

ECHO = """\
name: cli load echo
target: embedded
connections:
  main: {url: /echo, timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: "hi {{ vu }}"}
  - read: main
    expect: {text: "hi {{ vu }}"}
  - sleep: 20ms
  - close: main
"""


def _scenario(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "echo.yaml"
    path.write_text(ECHO + extra)
    return path


def _args(tmp_path: Path, path: Path, *more: str) -> list[str]:
    return ["run", str(path), "--report-dir", "", "--json", str(tmp_path / "r.json"), "-q", *more]


def test_load_options_make_a_load_run(tmp_path: Path, capsys: object) -> None:
    """--vus/--iterations on a file without load: run vus x iterations; the report fits the schema."""
    code = main(_args(tmp_path, _scenario(tmp_path), "--vus", "3", "--iterations", "4"))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert code == 0, doc["error"]
    Draft202012Validator(REPORT_SCHEMA).validate(doc)
    assert doc["iterations"]["completed"] == 12 and doc["settings"]["load"]["workers"] == 1
    assert sum(e["messages"] for e in doc["timeseries"]) == 24  # 12 writes + 12 reads


def test_check_flag_runs_once(tmp_path: Path) -> None:
    """--check runs a file that has load: once, as a check."""
    path = _scenario(tmp_path, "load:\n  vus: 5\n  duration: 10s\n")
    code = main(_args(tmp_path, path, "--check"))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and doc["iterations"]["completed"] == 1 and doc["settings"]["mode"] == "check"


def test_lost_threshold_exits_1_naming_it(tmp_path: Path, capsys: object) -> None:
    """A lost --threshold (read.p99 < 1us) fails the run with exit 1 and says which, by how much."""
    code = main(
        [
            "run",
            str(_scenario(tmp_path)),
            "--report-dir",
            "",
            "--json",
            str(tmp_path / "r.json"),
            "--vus",
            "2",
            "--iterations",
            "3",
            "--threshold",
            "read.p99 < 1us",
            "--threshold",
            "errors.rate < 1%",
        ]
    )
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert code == 1
    lost = [t for t in doc["thresholds"] if not t["passed"]]
    assert [t["expression"] for t in lost] == ["read.p99 < 1us"]
    assert "off by" in lost[0]["message"] and "read.p99 < 1us" in out
    assert "LOST read.p99 < 1us (--threshold):" in out  # where it was set, not a 'line 0'


def test_bad_threshold_is_a_usage_error(tmp_path: Path, capsys: object) -> None:
    """--threshold naming no step is refused with exit 2 and the loader's message."""
    code = main(_args(tmp_path, _scenario(tmp_path), "--vus", "1", "--threshold", "nope.p99 < 1ms"))
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert code == 2 and "names no step or metric 'nope'" in err


def test_limit_refused_before_the_run_exits_3(tmp_path: Path, capsys: object) -> None:
    """--vus 100000 --workers 1: a clear limit error, exit 3, before any connection is made."""
    started = time.monotonic()
    code = main(
        _args(tmp_path, _scenario(tmp_path), "--vus", "100000", "--duration", "10s", "--workers", "1")
    )
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert code == 3 and "RLIMIT_NOFILE" in err and "100,000" in err
    assert time.monotonic() - started < 3
    assert not (tmp_path / "r.json").exists()


def test_sigint_mid_run_writes_complete_interrupted_report(tmp_path: Path) -> None:
    """SIGINT during a 30 s load: in-flight iterations end, JSON/JUnit written, exit 130, quickly."""
    path = _scenario(tmp_path, "load:\n  vus: 4\n  duration: 30s\n  graceful_stop: 2s\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(path),
            "--report-dir",
            "",
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
    time.sleep(scaled(2.0))
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = proc.communicate(timeout=scaled(20))
    assert proc.returncode == 130, err
    assert time.monotonic() - started < scaled(5)
    doc = json.loads((tmp_path / "r.json").read_text())
    Draft202012Validator(REPORT_SCHEMA).validate(doc)
    assert doc["interrupted"] is True and doc["exit_code"] == 130
    assert doc["iterations"]["ended"] > 10
    read = next(s for s in doc["steps"] if s["name"] == "read main")
    assert read["failures"] == 0 and read["count"] >= doc["iterations"]["ended"] - 4
    assert "interrupted by signal" in doc["settings"]["load"]["stop_reason"]
    assert (tmp_path / "r.xml").read_text().startswith("<?xml")
    assert "INTERRUPTED" in out


def test_sigint_with_workers_collects_every_worker(tmp_path: Path) -> None:
    """SIGINT to a 2-worker run: the parent forwards the stop, both workers' results merge, exit 130."""
    path = _scenario(tmp_path, "load:\n  vus: 4\n  duration: 30s\n  graceful_stop: 2s\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(path),
            "--workers",
            "2",
            "--report-dir",
            "",
            "--json",
            str(tmp_path / "r.json"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(scaled(3.0))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=scaled(25))
    assert proc.returncode == 130, err
    doc = json.loads((tmp_path / "r.json").read_text())
    load = doc["settings"]["load"]
    assert doc["interrupted"] is True and load["workers"] == 2 and load["incomplete_workers"] == []
    assert doc["iterations"]["ended"] > 10 and load["vus_max_active"] == 4


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--duration", "87600h", "longer than 7 days"),
        ("--vus", "10000000", "not between 1 and 1,000,000"),
        ("--iterations", "0", "not between 1"),
        ("--workers", "5000", "not between 1 and 1,024"),
    ],
)
def test_absurd_load_options_are_refused_before_running(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Command-line load overrides obey the same bounds as a file: exit 2 with the reason."""
    assert main(["run", "scenarios/load.yaml", option, value, "--report-dir", ""]) == 2
    assert message in capsys.readouterr().err


def test_default_workers_follow_the_cores_the_process_may_use(tmp_path: Path) -> None:
    """600 users (enough for one worker per core) started under ``taskset`` on one core get one
    worker: two workers on one core would each measure the other's queue. Without the mask the
    same run takes one per core."""
    import os

    path = _scenario(tmp_path, "load: {vus: 600, iterations: 1}\n")
    core = min(os.sched_getaffinity(0))
    cmd = [sys.executable, "-m", "runner", *_args(tmp_path, path)]
    done = subprocess.run(["taskset", "-c", str(core), *cmd], capture_output=True, text=True, timeout=120)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert done.returncode == 0, (done.stderr[-2000:], doc["error"])
    assert doc["settings"]["load"]["workers"] == 1 and doc["iterations"]["completed"] == 600
    if len(os.sched_getaffinity(0)) > 1:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        doc = json.loads((tmp_path / "r.json").read_text())
        assert doc["settings"]["load"]["workers"] == len(os.sched_getaffinity(0)), done.stderr[-2000:]


def test_every_second_counts_what_was_done_in_it_against_node_ws(tmp_path: Path, node_ws_url: str) -> None:
    """The per-second series over 2 workers adds up to each step's count (the engine keeps the
    per-message steps as bare samples and folds them once a second: none may be lost or land in
    a second it was not taken in); an open-model rate of 50/s shows as ~50 per whole second."""
    path = tmp_path / "rate.yaml"
    path.write_text(
        "name: per second\nconnections:\n  main: {url: /echo, timeout: 5s}\nsteps:\n  - open: main\n"
        "  - repeat:\n      times: 5\n      steps:\n        - write: {connection: main, text: tick}\n"
        "        - read: main\n  - close: main\nload: {rate: 50/s, duration: 3s, workers: 2}\n"
    )
    code = main(_args(tmp_path, path, "--target", node_ws_url))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert code == 0, doc["error"]
    counts = {s["name"]: s["count"] for s in doc["steps"]}
    assert counts["write main"] == counts["read main"] == 5 * doc["iterations"]["completed"]
    series = doc["timeseries"]
    assert sum(e["steps"] for e in series) == sum(counts.values())
    assert sum(e["messages"] for e in series) == 2 * counts["read main"]
    assert all(e["latency_ms"]["max"] > 0 for e in series if e["messages"])
    whole = [e for e in series if 0 < e["t"] < 2]  # seconds the run began and ended outside of
    # (an iteration straddling a second's end puts some of its 12 steps in each)
    assert whole, series
    for e in whole:
        assert 40 <= e["iterations"] <= 60 and abs(e["steps"] - 12 * e["iterations"]) <= 24, series
