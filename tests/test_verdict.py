"""A run passes only if it measured what it set out to (issue 14 §1-2): the cases that used to
pass with exit 0 having measured nothing, and the figures whose meaning was ambiguous.

Each test runs ``wsload run`` as a user would (the CLI in this process, a real server on
127.0.0.1) and reads the exit code and the JSON report.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cli import main


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose TCP handshake completes (the kernel's backlog) but whose server never reads
    or answers: the upgrade request waits forever."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        yield int(s.getsockname()[1])


def _run(tmp_path: Path, text: str, *args: str, name: str = "s") -> tuple[int, dict]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    out = tmp_path / f"{name}.json"
    code = main(["run", str(path), "--json", str(out), "--report-dir", "", "-q", *args])
    return code, json.loads(out.read_text()) if out.exists() else {}


HANG = """\
name: hang
connections: {main: {url: /echo}}
steps:
  - open: main
  - write: {connection: main, text: hi}
  - read: main
load: {vus: 5, duration: 1s, graceful_stop: 500ms}
thresholds:
  - errors.rate < 0.1%
"""


def test_a_server_that_never_answers_the_upgrade_fails_the_load_run(tmp_path: Path, silent_port: int) -> None:
    """Opens without a time-out against a server that accepts TCP and never answers: the run
    used to PASS with 0 steps run and errors.rate 0%; now it fails, every open counted as
    pending with how long it waited, and errors.rate over no operation is no data."""
    code, doc = _run(tmp_path, HANG, "--target", f"ws://127.0.0.1:{silent_port}")
    assert code == 1 and not doc["passed"]
    opened = doc["steps"][0]
    assert opened["count"] == 0 and opened["pending"] == 5 and opened["pending_max_ms"] >= 1000, opened
    assert doc["problems"][:2] == [
        f"'open main' (line 4) never completed: 5 still waiting when the run ended, the longest for "
        f"{opened['pending_max_ms'] / 1000:.1f} s",
        "no data: no iteration completed (5 cut by the end of the run)",
    ]
    assert doc["iterations"] == {"started": 5, "ended": 0, "completed": 0, "failed": 0, "interrupted": 5}
    rate = next(t for t in doc["thresholds"] if t["expression"] == "errors.rate < 0.1%")
    assert not rate["passed"] and rate["message"] == "no data: no operation ended"


SLEEPY = """\
name: sleepy
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - sleep: 30s
  - close: main
load: {vus: 3, duration: 1s, graceful_stop: 500ms}
thresholds:
  - iterations.count > 3
"""


def test_iterations_cut_by_the_end_are_not_counted_as_done(tmp_path: Path) -> None:
    """A 1 s run whose iterations sleep 30 s: 'iterations.count > 3' used to pass with none
    completed; now the count is of ended iterations (0), the 3 cut ones are interrupted, the
    sleeps pending, and the run fails for having completed nothing."""
    code, doc = _run(tmp_path, SLEEPY)
    assert code == 1
    assert doc["iterations"] == {"started": 3, "ended": 0, "completed": 0, "failed": 0, "interrupted": 3}
    count = doc["thresholds"][0]
    assert not count["passed"] and count["value"] == 0
    assert "no data: no iteration completed (3 cut by the end of the run)" in doc["problems"]
    sleep = next(s for s in doc["steps"] if s["kind"] == "sleep")
    assert sleep["pending"] == 3 and sleep["count"] == 0


def test_hold_says_iterations_last_the_run(tmp_path: Path) -> None:
    """With load.hold the same cut iterations are expected: the run passes on what it measured
    (the opens), and still reports the iterations as interrupted, never as done."""
    text = SLEEPY.replace("graceful_stop: 500ms}", "graceful_stop: 500ms, hold: true}").replace(
        "  - iterations.count > 3\n", "  - open main.count >= 3\n"
    )
    code, doc = _run(tmp_path, text)
    assert code == 0, doc["error"]
    assert doc["iterations"]["interrupted"] == 3 and doc["iterations"]["ended"] == 0


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        (("--rate", "0/s", "--duration", "2s"), "", "a rate of 0 starts nothing"),
        (("--duration", "0s", "--vus", "2"), "", "a load of duration 0 runs nothing"),
        ((), "load: {vus: 2, duration: 0s}\n", "a load of duration 0 runs nothing"),
        ((), "load: {rate: 0/s, duration: 2s}\n", "a rate of 0 starts nothing"),
        ((), "load: {vus: 0, duration: 2s}\n", "load.vus: must be at least 1, got 0"),
        ((), "load: {stages: [{duration: 0s, vus: 5}]}\n", "these stages run nothing"),
    ],
)
def test_plans_that_run_nothing_are_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], text: str, message: str
) -> None:
    """--rate 0, a duration of 0, vus 0, stages of nothing: exit 2 before anything runs."""
    base = "name: n\ntarget: embedded\nconnections: {main: {url: /echo}}\nsteps: [{open: main}]\n"
    code, doc = _run(tmp_path, base + text, *args)
    assert code == 2 and doc == {}
    assert message in capsys.readouterr().err


def test_error_rate_counts_operations_not_sleeps(tmp_path: Path) -> None:
    """errors.rate is failed operations over operations (open, write, read, close, ping): a
    failed read among an open and a write is 1/3, however many sleeps there are (it was 1/5)."""
    text = """\
name: rate
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - sleep: 1ms
  - sleep: 1ms
  - write: {connection: main, text: hello}
  - read: main
    expect: {text: goodbye}
  - close: main
thresholds:
  - errors.rate < 50%
  - errors.rate < 0.3
"""
    code, doc = _run(tmp_path, text)
    assert code == 1
    values = [t["value"] for t in doc["thresholds"]]
    assert values == [pytest.approx(1 / 3), pytest.approx(1 / 3)]
    assert [t["passed"] for t in doc["thresholds"]] == [True, False]


def test_a_ramped_open_model_that_made_every_start_delivered_its_plan(tmp_path: Path) -> None:
    """rate 40/s ramped over 2 s of a 3 s run: 80 starts were due, not 120; the report says the
    plan was delivered (it used to say '80/s achieved of 100/s')."""
    text = """\
name: ramp
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps: [{open: main}, {close: main}]
load: {rate: 40/s, duration: 3s, ramp_up: 2s}
"""
    code, doc = _run(tmp_path, text)
    assert code == 0, doc["error"]
    plan = doc["settings"]["load"]["plan"]
    assert plan["planned"] == 80 and plan["made"] == 80 and plan["delivered"] == 1.0


def test_a_crash_inside_a_step_of_a_load_run_fails_it(tmp_path: Path) -> None:
    """An exception inside a step of a load run (here: a template function that raises at run
    time, as a bug would) fails the run with the step's internal errors counted; it used to stop
    the engine and pass with exit 0."""
    from conftest import run_on

    from runner.client import WebSocketClient
    from runner.load import run_load
    from runner.loader import load_scenario_text

    class Broken(WebSocketClient):
        def write(self, socket: int, data: str | bytes) -> int:
            raise RuntimeError("boom")

    scenario = load_scenario_text(
        "name: b\ntarget: embedded\nconnections: {main: {url: /echo, timeout: 5s}}\n"
        "steps:\n  - open: main\n  - write: {connection: main, text: x}\n  - close: main\n"
        "load: {vus: 2, duration: 1s, graceful_stop: 500ms}\n",
        "crash.yaml",
    )
    shared = Broken()
    result = run_on("uvloop", run_load(scenario, client_factory=lambda: shared, handle_signals=False))
    write = result.steps[1]
    assert not result.passed and result.exit_code == 1
    assert write.internal_errors == write.failures > 0
    assert (
        result.problems[0].startswith("internal error in ") and "'write main' (line 6)" in result.problems[0]
    )
    assert result.iterations.failed == write.internal_errors  # every user went on to the next iteration


def test_a_peer_close_says_its_code_and_reason_in_every_report(tmp_path: Path) -> None:
    """A read that returned 1 reports the peer's close code and reason: in the JSON (closes), the
    console and the HTML, whether the read expected it or not."""
    text = """\
name: closes
target: embedded
connections: {main: {url: "/close?code=4001&reason=going%20away", timeout: 5s}}
steps:
  - open: main
  - write: {connection: main, text: x}
  - read: main
    expect: {rc: 1}
"""
    html = tmp_path / "c.html"
    code, doc = _run(tmp_path, text, "--html", str(html))
    assert code == 0, doc["error"]
    assert doc["steps"][2]["closes"] == {"4001 going away": 1}
    assert "peer closed: 1 &times; 4001 going away" in html.read_text()


@pytest.mark.parametrize(
    ("args", "threshold", "reason"),
    [
        ((), "plan.delivered > 1%", "no data: 'plan' is measured in load runs only"),
        (
            ("--vus", "1", "--duration", "1s"),
            "schedule_lag.p99 < 1s",
            "no data: 'schedule_lag.p99' is measured in open-model runs only",
        ),
    ],
    ids=["check run", "closed model"],
)
def test_a_threshold_without_data_says_why(
    tmp_path: Path, args: tuple[str, ...], threshold: str, reason: str
) -> None:
    """The reason a run-wide threshold has no data names what is missing: a load run, or the
    open model (a closed-model load run used to be told it was no load run)."""
    smoke = Path(__file__).resolve().parent.parent / "scenarios" / "smoke.yaml"
    code, doc = _run(tmp_path, smoke.read_text(), *args, "--threshold", threshold)
    verdict = next(t for t in doc["thresholds"] if t["expression"] == threshold)
    assert code == 1 and not verdict["passed"] and verdict["message"] == reason, verdict


@pytest.mark.parametrize(
    ("threshold", "where", "message"),
    [
        ("read.p99 < 50", "thresholds", "threshold value: '50' has no unit: write 50ms or 50s"),
        ("read.max <= 2.5", "thresholds", "threshold value: '2.5' has no unit: write 2.5ms or 2.5s"),
        ("< 50", "latency", "steps[2].expect.latency: '50' has no unit: write 50ms or 50s"),
        (
            "read.p99.9 < 50ms",
            "thresholds",
            "the 99.9th percentile is written p999, did you mean 'read.p999'?",
        ),
    ],
    ids=["p99", "max", "latency", "p99.9"],
)
def test_a_duration_without_its_unit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], threshold: str, where: str, message: str
) -> None:
    """``read.p99 < 50`` meant 50 ms to its writer and was read as 50 s: a CI gate that could
    never fail. A duration in a threshold or an expected latency needs its unit (exit 2)."""
    text = (
        "name: units\ntarget: embedded\nconnections: {main: {url: /echo}}\nsteps:\n  - open: main\n"
        "  - write: {connection: main, text: hi}\n  - read: main\n"
    )
    if where == "latency":
        text += f"    expect: {{latency: {threshold}}}\n"
    else:
        text += f"thresholds:\n  - {threshold}\n"
    path = tmp_path / "units.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert message in captured.out + captured.err, captured
