"""The load engine in-process (``run_load``) against the embedded server: closed and open model
counts, duration, stages, workers' exact merge, dead workers, limits, abort_on_fail."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import run_on, scaled

from runner.errors import RunError
from runner.load import LoadOverrides, run_load
from runner.load.limits import raise_nofile
from runner.loader import load_scenario
from runner.results.codec import encode
from runner.results.result import RunResult

ECHO = """\
name: load echo
target: embedded
connections:
  main: {url: /echo, timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: "vu {{ vu }} it {{ iteration }}"}
  - read: {connection: main, timeout: 5s}
    expect: {text: "vu {{ vu }} it {{ iteration }}"}
  - close: main
"""

SLOW = """\
name: load slow
target: embedded
connections:
  main: {url: "/slow?delay=0.3", timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: x}
  - read: {connection: main, timeout: 5s}
  - close: main
"""

PACED = """\
name: load paced
target: embedded
connections:
  main: {url: /echo, timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: x}
  - read: main
  - sleep: 50ms
  - close: main
"""


def _file(tmp_path: Path, text: str, load: str = "", name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text + (f"load:\n{load}" if load else ""))
    return path


def _run(path: Path, overrides: LoadOverrides | None = None, workers: int | None = 1) -> RunResult:
    scenario = load_scenario(path)

    async def main() -> RunResult:
        return await asyncio.wait_for(
            run_load(scenario, overrides=overrides, workers=workers, handle_signals=False), scaled(60)
        )

    return run_on("uvloop", main())


def _step(result: RunResult, name: str) -> tuple[int, int]:
    step = next(s for s in result.steps if s.name == name)
    return step.count, step.failures


def test_closed_iterations_run_exactly(tmp_path: Path) -> None:
    """Closed model with iterations: vus x iterations iterations, every step that many times."""
    result = _run(_file(tmp_path, ECHO, "  vus: 7\n  iterations: 5\n"))
    assert result.passed, result.error
    assert result.iterations.completed == 35
    assert _step(result, "read main") == (35, 0)
    assert encode(result)["settings"]["load"]["vus_max_active"] == 7


def test_closed_duration_stops_on_time(tmp_path: Path) -> None:
    """A duration-bounded run ends at its duration (plus at most the in-flight iterations)."""
    started = time.monotonic()
    result = _run(_file(tmp_path, PACED, "  vus: 5\n  duration: 1500ms\n  graceful_stop: 1s\n"))
    elapsed = time.monotonic() - started
    assert result.passed, result.error
    assert 1.5 <= result.duration_s < 1.5 + 0.5, result.duration_s
    assert elapsed < scaled(4)
    # 5 users x 1.5 s / (50 ms sleep + a round trip): at most 5 x 31 iterations
    assert 80 <= result.iterations.ended <= 155, result.iterations


def test_a_mass_start_that_outlasts_the_duration_is_cut_at_the_duration(tmp_path: Path) -> None:
    """8,000 users whose only step sleeps 10 ms, for 1 s, on one worker: the generator cannot
    start them all in time (the started ones keep its loop busy). It used to go on starting
    users for 4 s (24 s with 15,000) before the run could end; now the start ends when the
    plan's end is due, the run ends near its duration, and the verdict says the generator
    was saturated."""
    text = "name: sleepers\ntarget: embedded\nconnections: {main: {url: /echo}}\nsteps:\n  - sleep: 10ms\n"
    result = _run(_file(tmp_path, text, "  vus: 8000\n  duration: 1s\n  graceful_stop: 0s\n"))
    assert result.duration_s < 1.0 + scaled(0.8), result.duration_s
    assert not result.passed and any("generator.saturated" in p for p in result.problems), result.problems


def test_stages_are_followed(tmp_path: Path) -> None:
    """Stages 0->4 over 1 s, hold 1 s, 4->0 over 1 s: active VUs per second follow the shape."""
    stages = (
        "  stages:\n    - {duration: 1s, vus: 4}\n    - {duration: 1s, vus: 4}\n"
        "    - {duration: 1s, vus: 0}\n"
    )
    result = _run(_file(tmp_path, PACED, stages + "  graceful_stop: 1s\n"))
    assert result.passed, result.error
    vus = {e.t: e.vus for e in result.timeseries}
    # Sampled just after each second: 1 s -> 4 (ramp done), 2 s -> 4 (hold), 3 s -> ramp down over
    assert vus[0] is None or vus[0] <= 4
    assert vus[1] == 4 and vus[2] == 4, vus
    assert encode(result)["settings"]["load"]["vus_max_active"] == 4
    assert vus.get(3) in (None, 0, 1), vus


def test_a_user_retired_by_a_ramp_down_stays_retired_when_the_ramp_goes_up_again(tmp_path: Path) -> None:
    """Stages 4 -> 1 -> 4 users while every iteration sleeps 0.45 s: the 3 users retired by the
    ramp down (0.6-0.7 s, in their second iteration) finish it and stop, though new users take
    their places while they still sleep; at 2 s exactly 4 users run, not the old ones as well."""
    text = "name: down up\ntarget: embedded\nconnections: {main: {url: /echo}}\nsteps:\n  - sleep: 450ms\n"
    stages = (
        "  stages:\n    - {duration: 0.1s, vus: 4}\n    - {duration: 0.5s, vus: 4}\n"
        "    - {duration: 0.1s, vus: 1}\n    - {duration: 0.1s, vus: 1}\n"
        "    - {duration: 0.1s, vus: 4}\n    - {duration: 2.2s, vus: 4}\n"
    )
    result = _run(_file(tmp_path, text, stages + "  graceful_stop: 1s\n"))
    assert result.passed, result.error
    vus = {e.t: e.vus for e in result.timeseries}
    assert vus[2] == 4, vus  # the 3 retired users ended by ~1 s
    # 4 at the start; 3 of them retired and still sleeping when the 3 new ones start
    assert 5 <= encode(result)["settings"]["load"]["vus_max_active"] <= 7


def test_a_pace_under_a_nanosecond_is_no_pace(tmp_path: Path) -> None:
    """``pace: 0.0000000001`` (valid: above 0) paces nothing, as a pace of 0 ns would: each
    iteration of a 20 ms sleep is timed from its own start, not from the first one's (the
    review of c5853b5 found iterations of 100-200 ms here)."""
    text = "name: tiny pace\ntarget: embedded\nconnections: {main: {url: /echo}}\nsteps:\n  - sleep: 20ms\n"
    result = _run(_file(tmp_path, text, "  vus: 2\n  iterations: 10\n  pace: 0.0000000001\n"))
    assert result.passed, result.error
    iteration_ms = encode(result)["settings"]["load"]["iteration_ms"]
    assert iteration_ms["p50"] >= 19 and iteration_ms["max"] < 20 + scaled(30), iteration_ms


def test_open_model_issues_the_planned_starts(tmp_path: Path) -> None:
    """Open model at 40/s for 2 s: 80 starts (made or dropped), lag measured, none dropped."""
    result = _run(_file(tmp_path, ECHO, "  rate: 40/s\n  duration: 2s\n  max_vus: 20\n"))
    load = encode(result)["settings"]["load"]
    assert result.passed, result.error
    assert load["started"] + load["dropped"] == 80
    assert load["dropped"] == 0 and result.iterations.completed == 80
    assert 39 <= load["achieved_rate"] <= 41
    lag = load["lag_ms"]
    assert lag is not None and 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    assert load["iteration_ms"]["p50"] > 0


def test_open_model_drops_starts_at_max_vus(tmp_path: Path) -> None:
    """Iterations of ~0.3 s at 20/s with max_vus 2: most starts are dropped and counted."""
    result = _run(_file(tmp_path, SLOW, "  rate: 20/s\n  duration: 1s\n  max_vus: 2\n"))
    load = encode(result)["settings"]["load"]
    assert load["started"] + load["dropped"] == 20
    assert 2 <= load["started"] <= 8, load
    assert load["dropped"] >= 12
    assert sum(e.dropped or 0 for e in result.timeseries) == load["dropped"]
    # latency from the intended start covers at least the server's delay
    assert load["iteration_ms"]["min"] >= 290  # (the server's timer may fire a little early)


def test_two_workers_merge_to_one_process_totals(tmp_path: Path) -> None:
    """The same iteration-bounded work over 2 processes gives the counts of one process."""
    path = _file(tmp_path, ECHO, "  vus: 6\n  iterations: 4\n")
    one = _run(path, workers=1)
    two = _run(path, workers=2)
    assert two.passed and one.passed, (two.error, one.error)
    assert encode(two)["settings"]["load"]["workers"] == 2
    assert two.iterations.completed == one.iterations.completed == 24
    assert [(s.name, s.count, s.ok) for s in two.steps] == [(s.name, s.count, s.ok) for s in one.steps]
    read = next(s for s in two.steps if s.name == "read main")
    assert read.hdr().get_total_count() == 24
    assert sum(e.iterations or 0 for e in two.timeseries) == 24


def _worker_pids(parent: int) -> list[int]:
    pids = []
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in cmd:
            pids.append(int(child))
    return pids


def test_killed_worker_is_reported_and_others_kept(tmp_path: Path) -> None:
    """SIGKILL of one worker mid-run: the result names it incomplete; the other's work is kept."""
    path = _file(tmp_path, PACED, "  vus: 4\n  duration: 3s\n  graceful_stop: 1s\n")
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + scaled(20)
        while time.monotonic() < deadline:
            pids = _worker_pids(os.getpid())
            if len(pids) == 2:
                time.sleep(1.5)  # into the run
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = _run(path, workers=2)
    thread.join()
    assert killed
    load = encode(result)["settings"]["load"]
    assert len(load["incomplete_workers"]) == 1
    assert not result.passed and "incomplete" in result.error and "signal 9" in result.error
    # the surviving worker ran 2 users for the whole 3 s (~55 ms per iteration)
    assert result.iterations.ended >= 60, result.iterations


def test_too_many_vus_refused_before_the_run(tmp_path: Path) -> None:
    """100,000 users in one process exceed the open-files limit: RunError naming the numbers, fast."""
    limit = raise_nofile()
    path = _file(tmp_path, ECHO, "  vus: 100000\n  duration: 10s\n")
    started = time.monotonic()
    with pytest.raises(RunError) as info:
        _run(path, workers=1)
    text = str(info.value)
    assert "100,000" in text and f"{limit:,}" in text and "RLIMIT_NOFILE" in text
    assert time.monotonic() - started < 2


def test_abort_on_fail_stops_early(tmp_path: Path) -> None:
    """An abort_on_fail threshold lost in the first second ends a 20 s run within a few seconds."""
    text = ECHO + "thresholds:\n  - threshold: read.max < 1us\n    abort_on_fail: true\n"
    started = time.monotonic()
    result = _run(_file(tmp_path, text, "  vus: 2\n  duration: 20s\n  graceful_stop: 1s\n"))
    assert time.monotonic() - started < scaled(5)
    assert not result.passed and result.exit_code == 1
    assert "aborted after" in result.error and "read.max < 1us" in result.error
    assert result.thresholds[0].passed is False


def test_open_model_stops_early_on_abort(tmp_path: Path) -> None:
    """An open-model run (its scheduler waiting on its alarm between starts) ends within a few
    seconds when an abort_on_fail threshold is lost, with the starts made until then counted."""
    text = ECHO + "thresholds:\n  - threshold: read.max < 1us\n    abort_on_fail: true\n"
    started = time.monotonic()
    result = _run(_file(tmp_path, text, "  rate: 30/s\n  duration: 20s\n  graceful_stop: 1s\n"))
    assert time.monotonic() - started < scaled(5)
    assert not result.passed and "aborted after" in result.error
    load = encode(result)["settings"]["load"]
    assert 10 <= load["started"] <= 30 * 5 and load["dropped"] == 0, load


def test_failure_pause_doubles_to_a_cap_and_resets() -> None:
    """After failed iterations a user waits 50 ms, 100 ms, ... at most 1 s by default; none after a
    pass; a fixed pause when first == max; none at all when it is 0."""
    from runner.load.engine import failure_pause

    assert failure_pause(0) == 0.0
    assert [failure_pause(n) for n in (1, 2, 3, 4, 5)] == [0.05, 0.1, 0.2, 0.4, 0.8]
    assert failure_pause(6) == failure_pause(10_000) == 1.0
    assert [failure_pause(n, 0.2, 0.2) for n in (1, 5)] == [0.2, 0.2]
    assert failure_pause(3, 0.0, 0.0) == 0.0


def _refused_port() -> int:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connections are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_server_does_not_spin_and_every_failure_is_counted(tmp_path: Path) -> None:
    """2 users against a closed port for 1.5 s pause instead of looping thousands of times a
    second; each attempt is still reported as a failed open with the refusal's text, and the
    pauses are counted (how many, how long, users pausing per second)."""
    text = ECHO.replace("target: embedded", f"target: ws://127.0.0.1:{_refused_port()}")
    result = _run(_file(tmp_path, text, "  vus: 2\n  duration: 1500ms\n  graceful_stop: 0s\n"))
    opens, failures = _step(result, "open main")
    assert not result.passed
    assert 2 <= opens == failures <= 2 * 8, opens  # 50+100+200+400+800 ms fill 1.5 s: ~6 each
    step = next(s for s in result.steps if s.name == "open main")
    assert any("connection refused" in e.message for e in step.errors), step.errors
    load = encode(result)["settings"]["load"]
    assert opens - 2 <= load["failure_pauses"] <= opens, load
    assert 1.0 <= load["failure_pause_s"] <= 3.0, load  # two users, most of 1.5 s each
    assert any(e.paused for e in result.timeseries), result.timeseries


def test_failure_pause_zero_turns_it_off(tmp_path: Path) -> None:
    """load.failure_pause: 0 makes a user start its next iteration at once after a failure."""
    text = ECHO.replace("target: embedded", f"target: ws://127.0.0.1:{_refused_port()}")
    result = _run(
        _file(tmp_path, text, "  vus: 1\n  duration: 500ms\n  graceful_stop: 0s\n  failure_pause: 0\n")
    )
    opens, failures = _step(result, "open main")
    assert opens == failures > 20, opens  # with the default pause: 4 in half a second
    assert encode(result)["settings"]["load"]["failure_pauses"] == 0


def test_templated_headers_are_rendered_per_user_and_iteration(tmp_path: Path) -> None:
    """An open's header template is rendered for each user and iteration (only connections
    without templates reuse their prepared options)."""
    text = """\
name: per-user headers
target: embedded
connections:
  main:
    url: /headers
    timeout: 5s
    headers: {X-User: "vu {{ vu }} it {{ iteration }}"}
  plain: {url: /echo, timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: hi}
  - read: {connection: main, timeout: 5s}
    expect: {json: {X-User: "vu {{ vu }} it {{ iteration }}"}}
  - open: plain
  - close: plain
  - close: main
"""
    result = _run(_file(tmp_path, text, "  vus: 3\n  iterations: 4\n"))
    assert result.passed, (result.error, result.failures)
    assert _step(result, "read main") == (12, 0)
    assert _step(result, "open plain") == (12, 0)


def test_quiet_gc_freezes_the_set_up_and_restores_everything() -> None:
    """During a run the set-up is frozen and the run's thresholds apply; nested blocks share
    them; afterwards nothing stays frozen and the old thresholds are back."""
    from runner import runtime as engine

    before = gc.get_threshold()
    with engine.quiet_gc():
        assert gc.get_threshold() == engine.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        with engine.quiet_gc():
            assert gc.get_threshold() == engine.GC_THRESHOLDS
        assert gc.get_threshold() == engine.GC_THRESHOLDS and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_timer_delay_is_the_time_left_in_whole_milliseconds() -> None:
    """The scheduler's timer is the time left rounded to whole milliseconds (what the loop's
    timers count), so an idle loop wakes within half a millisecond of the start, and it is
    never zero for a start further away than ``EARLY_NS`` (no busy wait)."""
    from runner.load.engine import EARLY_NS, wait_s

    for now in (5_000_000, 5_000_001, 5_999_999, 10**12 + 456_789):
        for left in (EARLY_NS + 1, 600_000, 999_999, 1_000_000, 1_499_999, 2_600_000, 10**9 + 7):
            wait = wait_s(now + left, now)
            assert wait >= 0.001 and abs(round(wait * 1000) - wait * 1000) < 1e-6, (now, left, wait)
            assert abs(wait * 1e9 - left) <= 500_000, (now, left, wait)


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_alarm_goes_off_at_its_deadline_not_before(kind: str) -> None:
    """The scheduler's timerfd alarm calls back once per arming, never before the deadline and
    (on an idle loop) well within a millisecond-timer's error; re-arming replaces the deadline."""
    import sys

    from runner.runtime import Alarm

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        late: list[int] = []
        fired = asyncio.Event()
        deadline = [0]

        def went_off() -> None:
            late.append(time.monotonic_ns() - deadline[0])
            fired.set()

        alarm = Alarm.create(loop, went_off)
        # wsload runs on Linux (the benchmarks and CI too), where timerfd always exists: a None
        # here would mean the open model silently fell back to millisecond timers.
        assert alarm is not None, f"no timerfd alarm on {sys.platform}"
        try:
            for delay_ns in (300_000, 1_700_000, 0):
                fired.clear()
                alarm.arm(time.monotonic_ns() + 50_000_000)  # replaced by the next line
                deadline[0] = time.monotonic_ns() + delay_ns
                alarm.arm(deadline[0])
                await asyncio.wait_for(fired.wait(), scaled(2))
            await asyncio.sleep(0.06)  # the replaced 50 ms deadline must not fire
        finally:
            alarm.close()
            alarm.close()
        return late

    late = run_on(kind, main())
    assert len(late) == 3, late
    assert all(0 <= ns < scaled(0.05) * 1e9 for ns in late), late
