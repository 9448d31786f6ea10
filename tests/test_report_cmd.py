"""``wsload report`` renders from saved JSON and compares runs; ``wsload run --every/--rounds`` loops,
updating reports and metrics each round, and stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from browser.synthetic import ramp
from conftest import scaled

from runner.cli import main
from runner.reports import html
from runner.results.codec import decode, encode

ROOT = Path(__file__).resolve().parent.parent
LONG_SLEEP = ROOT / "tests" / "failing" / "long_sleep.yaml"


def _saved_run(tmp_path: Path, name: str = "r.json") -> Path:
    path = tmp_path / name
    assert main(["run", "scenarios/rpc.yaml", "--report-dir", "", "-q", "--json", str(path)]) == 0
    return path


def test_report_renders_the_same_page_from_saved_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``wsload report r.json`` writes r.html beside it, the same page as rendering the result directly."""
    saved = _saved_run(tmp_path)
    capsys.readouterr()
    assert main(["report", str(saved)]) == 0
    out = tmp_path / "r.html"
    assert capsys.readouterr().out.strip() == str(out)
    result = decode(json.loads(saved.read_text()))
    assert out.read_text() == html.render(result)
    assert "rpc request/response" in out.read_text()


def test_report_compares_two_runs(tmp_path: Path) -> None:
    """Two JSON files: a comparison page with both runs' columns and the last-vs-first change column."""
    first = tmp_path / "before.json"
    first.write_text(json.dumps(encode(ramp(60))))
    second = tmp_path / "after.json"
    second.write_text(json.dumps(encode(ramp(60, seed=7, started_at="2026-11-26T08:00:00.000Z"))))
    assert main(["report", str(first), str(second), "-o", str(tmp_path / "cmp" / "c.html")]) == 0
    text = (tmp_path / "cmp" / "c.html").read_text()
    assert "Comparison of 2 runs" in text
    assert "#1 2026-11-25 20:00:00" in text and "#2 2026-11-26 08:00:00" in text
    assert "last vs first" in text
    assert main(["report", str(first), str(second)]) == 0
    assert (tmp_path / "before-vs-after.html").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("{not json", "not a JSON file"),
        ('{"passed": true}', "not a wsload JSON report"),
    ],
    ids=["missing", "not-json", "not-a-report"],
)
def test_report_of_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    """A missing, non-JSON or non-report file: exit 2 with the file and the reason, no HTML written."""
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err
    assert not (tmp_path / "x.html").exists()


def test_rounds_repeat_the_run_and_update_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--every 0.2s --rounds 3``: three runs, each writing its HTML and metrics and a line with its
    number, start time and verdict; all passed: exit 0."""
    prom = tmp_path / "m.prom"
    started = time.monotonic()
    code = main(
        [
            "run",
            "scenarios/smoke.yaml",
            "--report-dir",
            str(tmp_path / "reports"),
            "-q",
            "--every",
            "0.2s",
            "--rounds",
            "3",
            "--html",
            str(tmp_path / "r.html"),
            "--prometheus-textfile",
            str(prom),
        ]
    )
    assert code == 0
    assert time.monotonic() - started >= 0.4  # two waits between three rounds
    out = capsys.readouterr().out
    assert out.count("PASS echo smoke") == 3
    rounds = re.findall(r"^round (\d) at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ): PASS$", out, re.MULTILINE)
    assert [n for n, _ in rounds] == ["1", "2", "3"]  # each round's number, start time and verdict
    assert sorted(at for _, at in rounds) == [at for _, at in rounds]
    assert len(list((tmp_path / "reports").glob("*.json"))) == 3
    assert (tmp_path / "r.html").exists() and "wsload_scenario_success" in prom.read_text()


def test_rounds_exit_with_the_worst_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--rounds 3`` where the first round fails and the file is fixed before the second: the
    later rounds pass, and the loop still exits 1 (it used to exit with the last round's 0)."""
    scenario = tmp_path / "flip.yaml"
    good = (ROOT / "scenarios" / "smoke.yaml").read_text()
    bad = good.replace(
        "open: main", "open: main\n  - sleep: 1ms\n  - read: {connection: main, timeout: 50ms}", 1
    )
    assert bad != good
    scenario.write_text(bad)
    reports = tmp_path / "reports"

    def fix_after_first_round() -> None:
        deadline = time.monotonic() + 30
        while not list(reports.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.01)
        scenario.write_text(good)

    fixer = threading.Thread(target=fix_after_first_round, daemon=True)
    fixer.start()
    code = main(
        ["run", str(scenario), "--report-dir", str(reports), "-q", "--every", "0.5s", "--rounds", "3"]
    )
    fixer.join(5)
    out = capsys.readouterr().out
    verdicts = re.findall(r"^round \d at \S+: (\w+)$", out, re.MULTILINE)
    assert verdicts == ["FAIL", "PASS", "PASS"], out
    assert code == 1


def test_html_for_several_scenarios_gets_one_file_each(tmp_path: Path) -> None:
    """``--html r.html`` with several files: r-<stem>.html each, a repeated stem numbered like ``--json``."""
    code = main(
        [
            "run",
            "scenarios/smoke.yaml",
            "scenarios/rpc.yaml",
            "scenarios/smoke.yaml",
            "--report-dir",
            "",
            "-q",
            "--html",
            str(tmp_path / "r.html"),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.glob("*.html")) == ["r-rpc.html", "r-smoke-2.html", "r-smoke.html"]
    assert "rpc request/response" in (tmp_path / "r-rpc.html").read_text()


def test_every_rejects_a_bad_interval(capsys: pytest.CaptureFixture[str]) -> None:
    """``--every soon`` and ``--rounds 0`` are usage errors (exit 2)."""
    assert main(["run", "scenarios/smoke.yaml", "--every", "soon"]) == 2
    assert main(["run", "scenarios/smoke.yaml", "--every", "1s", "--rounds", "0"]) == 2
    assert "--every" in capsys.readouterr().err


def _loop(tmp_path: Path, scenario: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(scenario),
            "--report-dir",
            "",
            "--json",
            str(tmp_path / "r.json"),
            "--prometheus-textfile",
            str(tmp_path / "m.prom"),
            "--every",
            "1h",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_between_rounds_stops_the_loop(tmp_path: Path, sig: signal.Signals) -> None:
    """A signal while waiting for the next round is the loop's normal end: at once, with the last
    round's exit code (0: it passed), not 130; the round's line and outputs stay."""
    proc = _loop(tmp_path, ROOT / "scenarios" / "smoke.yaml", "-q")
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("PASS echo smoke")
    deadline = time.monotonic() + scaled(10)
    while not (tmp_path / "m.prom").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=scaled(10))
    assert proc.returncode == 0, err
    assert re.fullmatch(r"round 1 at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: PASS\n", out)
    assert "Traceback" not in err
    assert time.monotonic() - sent < scaled(2)
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert "wsload_scenario_success" in (tmp_path / "m.prom").read_text()


def test_a_signal_ends_rounds_with_the_worst_round_so_far(tmp_path: Path) -> None:
    """``--rounds 5``: round 1 fails, the file is fixed, round 2 passes, then SIGTERM between
    rounds: the gate exits 1 (it used to exit with the last round's 0, so a CI job's time-out
    could turn a failure into a pass)."""
    scenario = tmp_path / "flip.yaml"
    good = (ROOT / "scenarios" / "smoke.yaml").read_text()
    scenario.write_text(
        good.replace("open: main", "open: main\n  - read: {connection: main, timeout: 50ms}", 1)
    )
    proc = _loop(tmp_path, scenario, "-q", "--every", "2s", "--rounds", "5")
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("round 1 "):
            scenario.write_text(good)
        if line.startswith("round 2 "):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=scaled(10))
    rounds = [line.split(": ")[-1].strip() for line in lines if line.startswith("round ")]
    assert rounds == ["FAIL", "PASS"], lines
    assert proc.returncode == 1, (lines, out, err)


def test_sigterm_during_a_round_reports_it_and_stops(tmp_path: Path) -> None:
    """SIGTERM in the middle of a round: that round is reported as interrupted, and no other round starts."""
    proc = _loop(tmp_path, LONG_SLEEP, "--verbose")
    assert proc.stderr is not None
    assert "running" in proc.stderr.readline()
    time.sleep(scaled(0.5))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=scaled(20))
    assert proc.returncode == 130, err
    assert out.count("INTERRUPTED long sleep") == 1
    assert json.loads((tmp_path / "r.json").read_text())["interrupted"] is True
    assert 'wsload_scenario_exit_code{scenario="long sleep"} 130.0' in (tmp_path / "m.prom").read_text()
