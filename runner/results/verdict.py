"""Whether a finished run measured what it set out to: the problems that fail a run whatever
its steps and thresholds say (pure; a function of the result's figures).

A run passes only if it measured something. Each problem is one line a reader can act on:

- ``internal error``: a step raised inside wsload (a bug, not the server); the step's
  ``internal_errors`` count says how often, its error group says what;
- ``never completed``: an operation (open, write, read, receive, close, ping) that was still
  waiting at the end of the run in every execution it began: a server that accepts and never
  answers;
- ``stalled``: an operation some of whose executions completed while others were still waiting
  at the end far longer than the completed ones took: a server that stopped answering part-way.
  The wait must pass ``STALL_FACTOR`` times the completed p99 and a floor (``STALL_FLOOR_MS``, or
  a quarter of a shorter run), and also either that many times the slowest completed one or,
  summed over the waiting executions, ``STALL_SHARE`` of the time the users cut by the end had
  (one slow early answer does not hide a hang; users waiting for a push that comes every few
  seconds are not stalled). Its latency figures cover only the executions that ended (latency
  thresholds also count the waits: ``runner.checks.thresholds``);
- ``stalled``, for a ``receive`` (a stream) that took messages: its pending wait counts from its
  last message, not its start (a ``for: 30s`` receive cut while messages flow is not waiting
  for anything), and it is stalled when one execution had gone without a message
  ``STALL_FACTOR`` times the longest wait for a message seen before (from a receive's start or
  the message before), and the floor; a receive that took no message at all is judged as any
  operation (``never completed``, or ``stalled`` against its completed executions' durations);
- ``clocks``: more than ``AHEAD_SHARE`` of a read's (or receive's) stamped messages (``latency_from``) were
  stamped later than they arrived: the sender's clock is ahead of ours, or the stamp's unit is
  wrong (microseconds read as milliseconds); its delivery figures, recorded as 0, would pass any
  bound;
- ``no data``: no iteration ended, so no figure of the run covers a whole iteration (unless the
  load says its iterations last until the end of the run, ``load.hold``).

A run that was interrupted by a signal is reported as interrupted instead (exit 130).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.results.result import IterationCounts, StepResult

__all__ = ["AHEAD_SHARE", "STALL_FACTOR", "STALL_FLOOR_MS", "STALL_SHARE", "measurement_problems"]

#: A pending execution is stalled when it has waited this many times as long as the slowest
#: completed one (an operation that ends naturally is rarely caught at twice its worst time)
STALL_FACTOR = 2.0
#: and at least this long (so a run of 2 ms operations does not fail on scheduling noise), or a
#: quarter of the run if that is shorter.
STALL_FLOOR_MS = 1000.0
#: The share of the cut users' time spent in waits that had not ended that makes them stalled.
STALL_SHARE = 0.1
#: The share of stamped messages that may arrive "before" their stamp (clocks a little apart).
AHEAD_SHARE = 0.01


def _s(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.2g} ms"


def _stalled(s: StepResult, iterations: IterationCounts, duration_s: float) -> bool:
    """The ``stalled`` rule of the module docstring, for a step with completed executions."""
    lat = s.latency_ms
    assert lat is not None
    floor = min(STALL_FLOOR_MS, duration_s * 1000.0 / 4) if duration_s > 0 else STALL_FLOOR_MS
    if s.pending_max_ms < max(STALL_FACTOR * lat.p99, floor):
        return False
    if s.pending_max_ms >= STALL_FACTOR * lat.max:
        return True
    users = max(iterations.interrupted, s.pending)  # the users the end cut, each in one step
    share = s.pending * s.pending_mean_ms / (users * duration_s * 1000.0) if duration_s > 0 else 0.0
    return share >= STALL_SHARE


def _stream_stalled(s: StepResult, duration_s: float) -> bool:
    """A ``receive`` that took messages, with executions cut by the end: stalled when one had
    gone without a message (its pending wait counts from its last message) ``STALL_FACTOR``
    times the longest wait for a message any of its executions saw, and the floor."""
    floor = min(STALL_FLOOR_MS, duration_s * 1000.0 / 4) if duration_s > 0 else STALL_FLOOR_MS
    return s.pending_max_ms >= max(STALL_FACTOR * s.received_gap_max_ms, floor)


def measurement_problems(
    steps: Sequence[StepResult],
    iterations: IterationCounts,
    *,
    interrupted: bool,
    hold: bool = False,
    explained: bool = False,
    duration_s: float = 0.0,
) -> list[str]:
    """The reasons the run did not measure what it set out to (see the module docstring).
    ``explained``: the run already failed with an error that says why it measured little (a
    run time-out, an abort), so "never completed" and "no data" would only repeat it."""
    problems: list[str] = []
    crashes = [(s, s.internal_errors) for s in steps if s.internal_errors]
    if crashes:
        where = ", ".join(f"{s.name!r} (line {s.line}) {n}x" for s, n in crashes)
        problems.append(f"internal error in {sum(n for _, n in crashes)} step execution(s): {where}")
    if interrupted or explained:
        return problems
    for s in steps:
        if s.kind == "receive" and s.pending and s.received:
            if _stream_stalled(s, duration_s):
                problems.append(
                    f"{s.name!r} (line {s.line}) stalled: {s.pending} still receiving when the run ended, "
                    f"one without a message for {_s(s.pending_max_ms)}, against the longest wait for "
                    f"a message before, {_s(s.received_gap_max_ms)} ({s.received:,} messages received)"
                )
        elif s.can_fail and s.pending and s.count == 0:
            problems.append(
                f"{s.name!r} (line {s.line}) never completed: {s.pending} still waiting when the run "
                f"ended, the longest for {_s(s.pending_max_ms)}"
            )
        elif s.can_fail and s.pending and s.latency_ms is not None and _stalled(s, iterations, duration_s):
            problems.append(
                f"{s.name!r} (line {s.line}) stalled: {s.pending} still waiting when the run ended, "
                f"the longest for {_s(s.pending_max_ms)}, against p99 {_s(s.latency_ms.p99)} and max "
                f"{_s(s.latency_ms.max)} of the {s.count:,} that completed (its latency figures leave "
                "the waiting ones out)"
            )
    for s in steps:
        stamped = s.received if s.kind == "receive" else s.ok
        if s.delivery_ahead and s.delivery_ahead > AHEAD_SHARE * max(stamped, 1):
            problems.append(
                f"{s.name!r} (line {s.line}): {s.delivery_ahead:,} of {stamped:,} messages were stamped "
                "later than they arrived (their delivery recorded as 0): the sender's clock is ahead of this "
                "machine's, or latency_from's unit is wrong; its delivery figures are not latencies"
            )
    if iterations.ended == 0 and not hold:
        cut = f" ({iterations.interrupted} cut by the end of the run)" if iterations.interrupted else ""
        problems.append(f"no data: no iteration completed{cut}")
    return problems
