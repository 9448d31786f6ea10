"""Pure tests of frozen results (JSON round trip) and threshold evaluation (no event loop)."""

from __future__ import annotations

import json

from runner.checks.thresholds import evaluate, observed
from runner.results.codec import decode, encode
from runner.results.recorders import LatencyHistogram, QuickRow, RunRecorder
from runner.results.result import RunResult, build_result
from runner.scenario.model import Location, Threshold

LOC = Location("t.yaml", 7, 3)


def _result(*, interrupted: bool = False) -> RunResult:
    rec = RunRecorder()
    rec.iterations_started = rec.iterations_completed = 4
    read = rec.step("read main", "read", "main", 12)
    read2 = rec.step("read other", "read", "other", 20)
    for ms in range(1, 101):
        read.record(ok=True, rc=0, rc_is_success=True, latency_ns=ms * 1_000_000)
    for ms in (200, 300):
        read2.record(ok=True, rc=0, rc_is_success=True, latency_ns=ms * 1_000_000)
    read2.record(ok=False, rc=-2, rc_is_success=False, latency_ns=None, error="time-out")
    rec.add_failure("read other", 20, "time-out", "rc 0", "rc -2")
    opened = rec.step("open main", "open", "main", 9)
    opened.record(ok=True, rc=0, rc_is_success=True, latency_ns=2_000_000)
    opened.record_connect(500_000, 0, 1_500_000)
    return build_result(
        rec,
        scenario_name="s",
        scenario_file="t.yaml",
        started_at="2026-01-01T00:00:00.000Z",
        duration_s=2.0,
        target="ws://x",
        interrupted=interrupted,
    )


def _th(expr: str, subject: str, stat: str, op: str, value: float) -> Threshold:
    return Threshold(expr, subject, stat, op, value, LOC)  # type: ignore[arg-type]


def test_build_result_verdict_and_exit_code() -> None:
    """A failed step fails the run (exit 1); an interrupted run is exit 130 and not passed."""
    result = _result()
    assert not result.passed and result.exit_code == 1
    assert result.steps[1].rc == {"-2": 1} and result.steps[1].errors[0].message == "time-out"
    interrupted = _result(interrupted=True)
    assert interrupted.interrupted and interrupted.exit_code == 130 and not interrupted.passed


def test_json_round_trip() -> None:
    """to_json -> JSON text -> from_json gives back an equal result."""
    result = _result()
    again = decode(json.loads(json.dumps(encode(result))))
    assert again == result


def test_step_thresholds_from_histograms() -> None:
    """Step-name thresholds read that step's histogram; step-kind ones merge all steps of the kind."""
    result = _result()
    p99 = observed(_th("read main.p99 < 1s", "read main", "p99", "<", 1.0), result)
    assert p99 is not None and abs(p99 - 0.099) < 0.001
    merged_max = observed(_th("read.max < 1s", "read", "max", "<", 1.0), result)
    assert merged_max == 0.3
    merged_p99 = observed(_th("read.p99 < 1s", "read", "p99", "<", 1.0), result)
    assert merged_p99 is not None and abs(merged_p99 - 0.2) < 0.001  # 102 samples: p99 is the 101st


def test_global_thresholds() -> None:
    """errors.rate is the failed fraction of operations (sleeps are none), iterations.per_s and
    STEP.per_s are per second, checks.rate the passed fraction, failure_rate a step's failed share."""
    rec = RunRecorder()
    rec.iterations_started = rec.iterations_completed = 4
    read = rec.step("read main", "read", "main", 12)
    for _ in range(99):
        read.record(ok=True, rc=0, rc_is_success=True, latency_ns=1_000_000)
    read.record(ok=False, rc=-2, rc_is_success=False, latency_ns=None, error="time-out")
    sleep = rec.step("sleep", "sleep", "", 13)
    for _ in range(300):  # sleeps cannot fail: they must not dilute the error rate
        sleep.record(ok=True, rc=0, rc_is_success=True, latency_ns=1_000)
    result = build_result(
        rec, scenario_name="s", scenario_file="t.yaml", started_at="x", duration_s=2.0, target=""
    )
    assert observed(_th("e", "errors", "rate", "<", 0.1), result) == 1 / 100
    assert observed(_th("e", "errors", "count", "<", 1), result) == 1.0
    assert observed(_th("i", "iterations", "per_s", ">", 1), result) == 2.0
    assert observed(_th("i", "iterations", "count", ">", 1), result) == 4.0
    assert observed(_th("c", "checks", "rate", ">", 0.9), result) == 99 / 100
    assert observed(_th("r", "read main", "per_s", ">", 1), result) == 50.0
    assert observed(_th("r", "read main", "failure_rate", "<", 1), result) == 1 / 100


def test_evaluate_says_by_how_much() -> None:
    """A lost threshold says the observed value, the limit and the distance; the result follows it."""
    result = _result()
    ths = (
        _th("read main.p50 < 10ms", "read main", "p50", "<", 0.01),
        _th("open main.max < 1s", "open main", "max", "<", 1.0),
        _th("nothing.p99 < 1s", "close main", "p99", "<", 1.0),
    )
    evaluated = evaluate(ths, result)
    assert [t.passed for t in evaluated] == [False, True, False]  # p50: HDR equivalent value, 3 digits
    assert evaluated[0].message == "read main.p50 was 50.015ms, limit < 10.000ms (off by 40.015ms)"
    assert evaluated[0].line == 7 and evaluated[2].value is None
    assert evaluated[2].message == "no data: 'close main' never ran"
    rec = RunRecorder()
    rec.iterations_started = rec.iterations_completed = 1
    ok = build_result(rec, scenario_name="s", scenario_file="f", started_at="x", duration_s=1, target="")
    assert ok.passed
    lost = ok.with_thresholds(evaluate((_th("e", "errors", "count", ">", 5),), ok))
    assert not lost.passed and lost.exit_code == 1


def test_no_data_loses_a_threshold_unless_it_accepts_none() -> None:
    """errors.rate over no operation is no data (it used to pass as 0%); 'no_data: pass' accepts it."""
    rec = RunRecorder()
    rec.iterations_started = rec.iterations_interrupted = 5
    rec.step("open main", "open", "main", 6).record_pending(8_000_000_000)
    result = build_result(rec, scenario_name="s", scenario_file="f", started_at="x", duration_s=8, target="")
    strict = Threshold("errors.rate < 0.1%", "errors", "rate", "<", 0.001, LOC)
    lenient = Threshold("errors.rate < 0.1%", "errors", "rate", "<", 0.001, LOC, accept_no_data=True)
    lost, accepted = evaluate((strict, lenient), result)
    assert not lost.passed and lost.message == "no data: no operation ended"
    assert accepted.passed and accepted.message.startswith("no data: no operation ended (accepted")
    step = evaluate((Threshold("open main.p99 < 1s", "open main", "p99", "<", 1.0, LOC),), result)[0]
    assert (
        not step.passed
        and step.message == "no data: 'open main' never ended (1 still waiting when the run ended)"
    )


def test_a_run_that_measured_nothing_fails_with_the_reason() -> None:
    """No iteration completed, an operation that never completed, an internal error: each fails."""
    rec = RunRecorder()
    rec.iterations_started = rec.iterations_interrupted = 5
    for _ in range(5):
        rec.step("open main", "open", "main", 6).record_pending(8_000_000_000)
    result = build_result(rec, scenario_name="s", scenario_file="f", started_at="x", duration_s=8, target="")
    assert not result.passed and result.exit_code == 1
    assert result.problems == (
        "'open main' (line 6) never completed: 5 still waiting when the run ended, the longest for 8.0 s",
        "no data: no iteration completed (5 cut by the end of the run)",
    )
    held = build_result(
        rec, scenario_name="s", scenario_file="f", started_at="x", duration_s=8, target="", hold=True
    )
    assert held.problems == (result.problems[0],)  # hold: cut iterations are expected, a hung open is not
    crashed = RunRecorder()
    crashed.iterations_started = crashed.iterations_failed = 1
    step = crashed.step("write main", "write", "main", 7)
    step.record(ok=False, rc=-1, rc_is_success=False, latency_ns=None, error="internal error: boom")
    step.internal_errors += 1
    bad = build_result(crashed, scenario_name="s", scenario_file="f", started_at="x", duration_s=1, target="")
    assert bad.problems == ("internal error in 1 step execution(s): 'write main' (line 7) 1x",)


def test_connect_split_merged_over_open_steps() -> None:
    """The run's connect_ms merges the tcp/tls/upgrade histograms of every open step."""
    rec = RunRecorder()
    for name, tcp_ms in (("open a", 1), ("open b", 3)):
        step = rec.step(name, "open", name[-1], 1)
        step.record(ok=True, rc=0, rc_is_success=True, latency_ns=5_000_000)
        step.record_connect(tcp_ms * 1_000_000, 0, 2_000_000)
    result = build_result(rec, scenario_name="s", scenario_file="f", started_at="x", duration_s=1, target="")
    assert set(result.connect_ms) == {"tcp", "upgrade"}
    assert result.connect_ms["tcp"].max == 3.0 and result.connect_ms["tcp"].mean == 2.0


def test_error_groups_are_per_failure_not_per_socket() -> None:
    """A load run's users fail alike on sockets with different numbers: one group, with the
    count of all of them (it used to be one group per socket, 50 of them, then 'other')."""
    from runner.results.recorders import StepRecorder

    rec = StepRecorder("write main", "write", "main", 4)
    for n in range(200):
        rec.add_error(-1, f"connection closed: socket {n} is closed, cannot write")
        rec.add_error(-1, f"protocol error: socket {n}: invalid UTF-8 in a text message")
    assert sorted(rec.error_groups()) == [
        (-1, "connection closed: the socket is closed, cannot write", 200),
        (-1, "protocol error: invalid UTF-8 in a text message", 200),
    ]


def test_a_capacity_ramp_that_ends_unhealthy_does_not_say_top_of_the_ramp() -> None:
    """The last second of a ramp saturated (one bad second alone is forgiven, so the capacity
    is the level before it): the finding says where it ended, not 'the top of the ramp'."""
    from runner.load.capacity import capacity_of, render
    from runner.results.result import IterationCounts, RunResult, SecondSample
    from runner.scenario.model import LoadSpec, Scenario, Stage

    ramp = LoadSpec(model="open", rate=0.0, stages=(Stage(5.0, 500.0),))
    seconds = [SecondSample(t, int(100 * (t + 0.5)), 10, 0, {}, cpu=0.3) for t in range(1, 4)]
    seconds.append(SecondSample(4, 450, 10, 0, {}, cpu=0.97, saturated=True))
    result = RunResult(
        True, False, 0, "s", "s.yaml", "", 5.0, "", (),
        iterations=IterationCounts(started=1000, completed=1000), timeseries=tuple(seconds),
    )  # fmt: skip
    capacity = capacity_of(result, ramp)
    assert capacity.value == 350  # seconds 1-3 planned 150, 250, 350 starts and made them
    assert capacity.limited_by == "at 450 starts/s, its last second: saturated (CPU 97%)"
    text = render(Scenario("s", "s.yaml", (), {}), capacity, workers=1, target="t")
    assert "top of the ramp" not in text and "it ended at 450 starts/s, its last second" in text, text


def test_a_ramps_capacity_is_bounded_by_what_its_starts_cost_held() -> None:
    """A ramp whose rising seconds look cheaper than the rate costs held: 750, 1,250 and 1,750
    starts at 64%, 81% and 89% of a core, then saturated. The last healthy level alone said 1,750;
    held, 0.62 ms of CPU per start allows about 1,450 at 90% of a core, and that is the capacity
    (a run at 80% of 1,750 saturated the core in CI)."""
    from runner.load.capacity import capacity_of
    from runner.results.result import IterationCounts, RunResult, SecondSample
    from runner.scenario.model import LoadSpec, Stage

    ramp = LoadSpec(model="open", rate=0.0, stages=(Stage(8.0, 4000.0),))
    cpus = {1: 0.64, 2: 0.81, 3: 0.89, 4: 0.98, 5: 0.99}
    seconds = [
        SecondSample(t, 250 + 500 * t, 40, 0, {}, cpu=cpu, saturated=cpu >= 0.9) for t, cpu in cpus.items()
    ]
    result = RunResult(
        True, False, 0, "s", "s.yaml", "", 8.0, "", (),
        iterations=IterationCounts(started=9000, completed=9000), timeseries=tuple(seconds),
    )  # fmt: skip
    capacity = capacity_of(result, ramp)
    assert [level.planned for level in capacity.levels[:3]] == [750, 1250, 1750]
    assert capacity.value == round(0.9 / ((0.64 + 0.81 + 0.89) / (750 + 1250 + 1750)))  # 1,442
    assert capacity.suggested < 1200


def _quick(rec: RunRecorder, row: QuickRow, now_ns: int, latency_ns: int) -> None:
    """What the engine does for a passed per-message step (``VirtualUser.run_steps``)."""
    if now_ns >= rec.next_second_ns:
        rec.fold(now_ns)
    assert row.responses is not None
    row.responses.append(latency_ns + 1_000_000)
    row.samples.append(latency_ns)


def test_quick_samples_count_in_the_second_they_were_taken_in_and_every_reader_sees_them() -> None:
    rec = RunRecorder(start_ns=10_000_000_000)
    step = rec.step("echo", "read", "main", 7)
    row = rec.quick_row(step, read=True, message=True)
    _quick(rec, row, 10_000_000_100, 1_500_000)  # second 0
    _quick(rec, row, 10_999_999_999, 2_500_000)  # still second 0
    # A reader between two records sees what is pending, folded into the second it was taken in.
    assert (rec.steps["echo"].count, rec.steps["echo"].ok) == (2, 2)
    _quick(rec, row, 12_000_000_000, 9_000_000)  # second 2: the first record of it folds second 0
    _quick(rec, row, 12_500_000_000, 300)  # below the histogram's 1 us: counted as 1 us
    data = rec.serialize()  # what a worker sends: everything, pending included
    (echo,) = data["steps"]
    assert (echo["count"], echo["ok"]) == (4, 4)
    series = {s.t: s for s in rec.timeseries.samples()}
    assert sorted(series) == [0, 2]
    assert (series[0].steps, series[0].messages, series[2].steps, series[2].messages) == (2, 2, 2, 2)
    latency = rec.steps["echo"].latency
    assert (latency.count, latency.min_ns, latency.max_ns) == (4, 300, 9_000_000)
    assert latency.sum_ns == 1_500_000 + 2_500_000 + 9_000_000 + 300
    first = series[0].latency  # compacted once a later second began
    assert isinstance(first, dict) and (first["count"], first["max_ns"]) == (2, 2_500_000)
    last = series[2].latency
    assert isinstance(last, LatencyHistogram) and (last.count, last.min_ns) == (2, 300)
    response = rec.steps["echo"].response
    assert response is not None and (response.count, response.min_ns) == (4, 1_000_300)
    # Taking an interval (a worker's delta) starts afresh and keeps the rows the engine holds.
    rec.take_interval()
    _quick(rec, row, 12_600_000_000, 4_000_000)
    assert rec.steps["echo"].count == 1
    assert [(s.t, s.steps) for s in rec.timeseries.samples()] == [(2, 1)]
