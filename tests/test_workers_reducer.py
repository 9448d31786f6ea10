"""The parent's state of a run over workers, driven by typed messages alone (no process, pipe or
event loop): what each message does, who is complete, what stops the run, what is summed."""

from __future__ import annotations

import pickle

import pytest

from runner.load.driver import Gauges
from runner.load.messages import Delta, Done, Failed, Ready, Start, Stop, Tick, WorkerInfo
from runner.load.pool_state import PoolState
from runner.results.recorders import RunRecorder
from runner.results.result import TlsInfo

SECOND = 1_000_000_000
PATIENCE = 16 * SECOND  # graceful_stop 1 s + the parent's margin of 15 s


def _delta(reads: int, failed: int = 0, iterations: int = 0) -> Delta:
    """One worker's delta: ``reads`` reads of 1 ms, ``failed`` of them time-outs."""
    rec = RunRecorder()
    rec.iterations_started = rec.iterations_completed = iterations
    step = rec.step("read main", "read", "main", 7)
    for i in range(reads):
        if i < failed:
            step.record(ok=False, rc=-2, rc_is_success=False, latency_ns=None, error="time-out")
        else:
            step.record(ok=True, rc=0, rc_is_success=True, latency_ns=1_000_000)
    return rec.take_interval()


def _reads(state: PoolState) -> tuple[int, int]:
    step = state.total.steps["read main"]
    return step.count, step.failures


def _started(workers: int) -> PoolState:
    state = PoolState(workers, patience_ns=PATIENCE)
    for number in range(1, workers + 1):
        assert state.apply(number, Ready(), 0) is None
    state.start(10 * SECOND, planned_s=60.0)
    return state


def test_workers_are_awaited_until_ready_or_ended() -> None:
    """Before the start the parent waits for every worker; one that is ready, failed or died is
    no longer waited for."""
    state = PoolState(3, patience_ns=PATIENCE)
    assert not state.all_started() and state.not_started() == [1, 2, 3]
    state.apply(1, Ready(), 0)
    state.died(3)
    assert state.not_started() == [2] and not state.all_started()
    state.apply(2, Failed("scenario.yaml:3: bad"), 0)
    assert state.all_started() and state.not_started() == []
    assert state.errors() == ["worker 2: scenario.yaml:3: bad"]
    assert state.alive() == [1, 2]  # the start goes to every worker not dead


def test_a_worker_that_sends_done_after_stop_is_complete() -> None:
    """A signal stops the run; each worker sends its last tick and Done: every worker is
    complete, their deltas add up, and the run's stop reason and time are the signal's."""
    state = _started(2)
    stop = state.stop("interrupted by signal 2", 12 * SECOND)
    assert stop == Stop("interrupted by signal 2")
    assert state.running() == [1, 2]  # both are told
    for number in (1, 2):
        state.apply(number, Tick(_delta(5, iterations=2), Gauges(3, 3, 0)), 12 * SECOND)
        state.apply(number, Done(_delta(1), WorkerInfo(3, "interrupted by signal 2", TlsInfo())), 13 * SECOND)
    assert state.all_ended() and state.running() == []
    assert state.incomplete() == [] and state.problems({1: 0, 2: 0}) == []
    assert _reads(state) == (12, 0) and state.total.iterations_completed == 4
    assert state.final_stop_reason() == "interrupted by signal 2"
    assert state.stopped_at_s() == 2.0
    assert state.max_active() == 6
    assert state.gauges() == Gauges()  # a worker that is done counts zero


def test_a_failed_worker_stops_the_others_with_its_text() -> None:
    """Failed from worker 2 returns the Stop that names it, for the workers still running; the
    run's stop reason is the first one, even if a signal follows."""
    state = _started(3)
    state.apply(1, Done(_delta(2), WorkerInfo(1, "", TlsInfo())), 11 * SECOND)
    stop = state.apply(2, Failed("RuntimeError: boom"), 12 * SECOND)
    assert stop == Stop("worker 2: RuntimeError: boom")
    assert state.running() == [3]  # not the failed worker, nor the one already done
    assert state.stop_reason == "worker 2: RuntimeError: boom"
    assert state.errors() == ["worker 2: RuntimeError: boom"]
    # a signal afterwards is forwarded, but the run keeps its first reason and time
    assert state.stop("interrupted by signal 15", 14 * SECOND) == Stop("interrupted by signal 15")
    assert state.final_stop_reason() == "worker 2: RuntimeError: boom"
    assert state.stopped_at_s() == 2.0
    assert state.incomplete() == []  # a failed worker is not an incomplete one: it said why
    assert state.problems({}) == ["worker 2: RuntimeError: boom"]


def test_a_dead_workers_last_deltas_are_kept_and_it_is_named_incomplete() -> None:
    """Worker 1 sends two ticks and dies: both deltas stay in the total, it is named
    incomplete with how it ended, and the other worker's work is kept."""
    state = _started(2)
    state.apply(1, Tick(_delta(4, failed=1), Gauges(2, 2, 0)), 11 * SECOND)
    state.apply(1, Tick(_delta(3), Gauges(2, 2, 1)), 12 * SECOND)
    state.died(1)
    state.apply(2, Done(_delta(10), WorkerInfo(2, "", TlsInfo())), 13 * SECOND)
    assert state.all_ended() and state.incomplete() == [1]
    assert _reads(state) == (17, 1)
    assert state.problems({1: -9, 2: 0}) == ["worker 1 died (killed by signal 9)"]
    assert state.problems({1: 3}) == ["worker 1 died (exit code 3)"]
    assert state.problems({}) == ["worker 1 died (exit code None)"]  # not reaped


def test_death_after_the_last_message_changes_nothing() -> None:
    """A worker's process ending after its Done (or Failed) is its normal end, not a death."""
    state = _started(2)
    state.apply(1, Done(_delta(1), WorkerInfo(1, "", TlsInfo())), 11 * SECOND)
    state.apply(2, Failed("OSError: no route"), 11 * SECOND)
    state.died(1)
    state.died(2)
    assert state.incomplete() == []
    assert state.problems({1: 0, 2: 1}) == ["worker 2: OSError: no route"]


def test_gauges_are_summed_over_live_workers() -> None:
    """The parent's gauges are the sum of each worker's latest tick; a worker that died or is
    done counts zero."""
    state = _started(3)
    state.apply(1, Tick(_delta(0), Gauges(10, 9, 1)), 11 * SECOND)
    state.apply(2, Tick(_delta(0), Gauges(20, 18, 2)), 11 * SECOND)
    state.apply(3, Tick(_delta(0), Gauges(5, 5, 0)), 11 * SECOND)
    assert state.gauges() == Gauges(35, 32, 3)
    state.apply(1, Tick(_delta(0), Gauges(12, 12, 0)), 12 * SECOND)  # the latest replaces
    assert state.gauges() == Gauges(37, 35, 2)
    state.died(2)
    assert state.gauges() == Gauges(17, 17, 0)
    state.apply(3, Done(_delta(0), WorkerInfo(5, "", TlsInfo())), 13 * SECOND)
    assert state.gauges() == Gauges(12, 12, 0)


def test_overdue_after_the_plan_or_a_stop_and_the_patience() -> None:
    """Workers still running are killed only past the plan's end plus the patience, or past a
    stop plus the patience, whichever comes first; an iteration-bounded plan only after a stop."""
    state = _started(1)  # start 10 s, plan 60 s: hard end at 86 s
    assert not state.overdue(86 * SECOND)
    assert state.overdue(86 * SECOND + 1)
    state.stop("aborted", 20 * SECOND)
    assert not state.overdue(36 * SECOND) and state.overdue(36 * SECOND + 1)

    bounded = PoolState(1, patience_ns=PATIENCE)
    assert bounded.start(5 * SECOND, planned_s=None) == Start(5 * SECOND)
    assert bounded.total.start_ns == 5 * SECOND  # deltas' seconds are counted from the start
    assert not bounded.overdue(10_000 * SECOND)
    bounded.stop("interrupted by signal 2", 10_000 * SECOND)
    assert bounded.overdue(10_016 * SECOND + 1)


def test_the_run_reports_what_the_workers_said_at_their_end() -> None:
    """Without a stop of the parent's, the run's stop reason is the first a worker gave; TLS
    is merged (verified only if every worker's was); a worker stopped before the start has no
    TLS to merge."""
    state = _started(3)
    relaxed = TlsInfo(verified=False, ignored_errors=("SelfSignedCertificate",), allowed=("all",))
    state.apply(1, Done(_delta(0), WorkerInfo(4, "", TlsInfo(allowed=("HostNameMismatch",)))), SECOND)
    state.apply(2, Done(_delta(0), WorkerInfo(3, "engine stopped: no users", relaxed)), SECOND)
    state.apply(3, Done(_delta(0), WorkerInfo(stop_reason="start aborted")), SECOND)
    assert state.final_stop_reason() == "engine stopped: no users"
    assert state.stopped_at_s() is None
    assert state.max_active() == 7
    assert state.tls() == TlsInfo(
        verified=False, ignored_errors=("SelfSignedCertificate",), allowed=("HostNameMismatch", "all")
    )
    assert PoolState(1, patience_ns=0).tls() == TlsInfo()  # nobody reported: the default


@pytest.mark.parametrize(
    "message",
    [
        Ready(),
        Tick(_delta(3, failed=1), Gauges(1, 2, 3)),
        Done(_delta(1), WorkerInfo(2, "interrupted by signal 2", TlsInfo(False, ("X",), ("all",)))),
        Failed("RunError: the embedded server could not start"),
        Start(123_456_789),
        Stop("interrupted by signal 15"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_messages_cross_a_pipe_unchanged(message: object) -> None:
    """Every message survives pickling (what a multiprocessing Pipe does) equal to itself."""
    assert pickle.loads(pickle.dumps(message)) == message
