"""Whether a finished run measured what it set out to: the problems that fail a run whatever
its steps and thresholds say (pure; a function of the result's figures).

A run passes only if it measured something. Each problem is one line a reader can act on:

- ``internal error``: a step raised inside wsload (a bug, not the server); the step's
  ``internal_errors`` count says how often, its error group says what;
- ``never completed``: an operation (open, write, read, close, ping) that was still waiting at
  the end of the run in every execution it began: a server that accepts and never answers;
- ``stalled``: an operation some of whose executions completed while others were still waiting
  at the end for far longer than the slowest that completed (``STALL_FACTOR`` times it, and at
  least ``STALL_FLOOR_MS``): a server that stopped answering part-way. Its latency figures cover
  only the executions that ended, so without this a hung target could pass a latency threshold;
- ``no data``: no iteration ended, so no figure of the run covers a whole iteration (unless the
  load says its iterations last until the end of the run, ``load.hold``).

A run that was interrupted by a signal is reported as interrupted instead (exit 130).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.results.result import IterationCounts, StepResult

__all__ = ["STALL_FACTOR", "STALL_FLOOR_MS", "measurement_problems"]

#: A pending execution is stalled when it has waited this many times as long as the slowest
#: completed one (an operation that ends naturally is rarely caught at twice its worst time)
STALL_FACTOR = 2.0
#: and at least this long (so a run of 2 ms operations does not fail on scheduling noise).
STALL_FLOOR_MS = 1000.0


def _s(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def measurement_problems(
    steps: Sequence[StepResult],
    iterations: IterationCounts,
    *,
    interrupted: bool,
    hold: bool = False,
    explained: bool = False,
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
        if s.can_fail and s.pending and s.count == 0:
            problems.append(
                f"{s.name!r} (line {s.line}) never completed: {s.pending} still waiting when the run "
                f"ended, the longest for {_s(s.pending_max_ms)}"
            )
        elif s.can_fail and s.pending and s.latency_ms is not None:
            slowest = s.latency_ms.max
            if s.pending_max_ms >= max(STALL_FACTOR * slowest, STALL_FLOOR_MS):
                problems.append(
                    f"{s.name!r} (line {s.line}) stalled: {s.pending} still waiting when the run ended, "
                    f"the longest for {_s(s.pending_max_ms)}, against {_s(slowest)} for the slowest of "
                    f"the {s.count:,} that completed (its latency figures leave the waiting ones out)"
                )
    if iterations.ended == 0 and not hold:
        cut = f" ({iterations.interrupted} cut by the end of the run)" if iterations.interrupted else ""
        problems.append(f"no data: no iteration completed{cut}")
    return problems
