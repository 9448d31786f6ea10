"""``wsload run FILE --check-capacity``: how much of this scenario can this machine generate?

A short ramp of the scenario's own iterations against the real target: the open model's rate
(or the closed model's users) rises linearly from almost nothing to ``top`` over ``ramp_s``
seconds, and every second of it is judged as the plan checks judge a whole run: the starts the
plan had due that second were made (95%), none was dropped, the busiest worker stayed under 90%
of its core and its event loop lagged less than the bound. The capacity is the level of the last
second before the generator was unhealthy two seconds in a row (one bad second, a GC pause, is
forgiven); a real run at 80% of it leaves room for what the ramp did not see. In the open model
the capacity is also at most what the healthy seconds' CPU per start allows at 90% of a core
(``cpu_bound``): a ramp's second carries only part of the work of the starts it made (the rest of
their iterations falls into the next, rising second), so its CPU share understates what that rate
costs when held. Measured: a ramp judged 1,750 starts/s healthy at 89% of a core, and a run at
80% of it (1,400/s) held the core at 98%, saturated in 2 of its 3 seconds; its healthy seconds
had cost 0.62 ms of CPU per start, which bounds the capacity at 1,450/s. A ramp in which no
iteration completed, or whose operations stalled, finds no capacity, and a second in which more
than 1% of the steps failed is not healthy: iterations that fail at once (a 404, a refused
connection) cost far less than the scenario's, so their rate says nothing about it.

The figure is this machine's, with these workers, this scenario and this target: a slower server
lowers it (its answers hold users longer), more workers raise it. ``capacity_of`` is pure (a
function of the ramp's result), so the judgement is tested without a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from runner.load.health import SATURATED_CPU
from runner.load.limits import default_max_vus
from runner.results.result import RunResult, SecondSample
from runner.results.verdict import measurement_problems
from runner.scenario.model import LoadSpec, Scenario, Stage
from runner.scenario.plan import planned_starts

__all__ = ["Capacity", "CapacityLevel", "capacity_of", "cpu_bound", "ramp_plan", "render"]

#: A level at or below this share of its planned starts was not delivered.
DELIVERED = 0.95
#: Unhealthy seconds in a row that end the capacity (one alone is forgiven).
BAD_IN_A_ROW = 2
#: A level at which more than this share of the steps ended failed measured failures, not the
#: scenario: the server refused or broke, and failing fast is cheap.
FAILED_STEPS = 0.01
#: What a following run should plan at most, as a share of the capacity found.
HEADROOM = 0.8


@dataclass(frozen=True, slots=True)
class CapacityLevel:
    """One second of the ramp: what the plan asked, what was made, the generator's state."""

    second: int
    planned: float  # starts due in that second (open) or users planned (closed)
    made: float
    cpu: float | None
    loop_lag_ms: float | None
    why: str  # "" when healthy, else what was wrong

    @property
    def healthy(self) -> bool:
        return not self.why


@dataclass(frozen=True, slots=True)
class Capacity:
    """The finding: ``value`` in ``unit`` (starts/s or users), 0 when no level was healthy."""

    unit: str
    value: float
    levels: tuple[CapacityLevel, ...]
    limited_by: str  # what ended it ("" when the top of the ramp was still healthy)
    #: The ramp measured nothing of the scenario (no iteration completed, operations stalled):
    #: no capacity to speak of, ``limited_by`` says why.
    unmeasured: bool = False

    @property
    def suggested(self) -> float:
        return self.value * HEADROOM


def ramp_plan(load: LoadSpec, top: float, ramp_s: float) -> LoadSpec:
    """The scenario's load as a ramp from 0 to ``top`` (starts/s, or users) over ``ramp_s``."""
    if load.model == "open":
        return replace(
            load,
            rate=0.0,
            stages=(Stage(ramp_s, top),),
            duration_s=None,
            iterations=None,
            ramp_up_s=0.0,
            max_vus=max(load.max_vus or 0, default_max_vus(replace(load, rate=top, stages=()))),
            graceful_stop_s=min(load.graceful_stop_s, 2.0),
            hold=False,
        )
    return replace(
        load,
        vus=max(1, round(top)),
        stages=(Stage(ramp_s, float(round(top))),),
        duration_s=None,
        iterations=None,
        ramp_up_s=0.0,
        graceful_stop_s=min(load.graceful_stop_s, 2.0),
    )


def capacity_of(result: RunResult, ramp: LoadSpec) -> Capacity:
    """Judge each whole second of the ramp (module docstring) and find the capacity."""
    by_t = {e.t: e for e in result.timeseries}
    unit = "starts/s" if ramp.model == "open" else "users"
    total_s = sum(s.duration_s for s in ramp.stages)
    top = ramp.stages[-1].target if ramp.stages else 0.0
    levels: list[CapacityLevel] = []
    for t in range(1, int(total_s)):
        e = by_t.get(t) or SecondSample(t, 0, 0, 0, {})
        cpu = float(e.cpu) if e.cpu is not None else None
        lag = float(e.loop_lag_ms) if e.loop_lag_ms is not None else None
        whys: list[str] = []
        if ramp.model == "open":
            planned = float(planned_starts(ramp, t + 1) - planned_starts(ramp, t))
            made = float(e.starts)
            if e.dropped:
                whys.append(f"{e.dropped} starts dropped")
            if planned >= 20 and made < planned * DELIVERED:
                whys.append(f"made {made:.0f} of {planned:.0f} starts")
        else:
            planned = round(top * (t + 1) / total_s) if total_s else top
            made = float(e.vus or 0)
        if e.steps and e.failures > FAILED_STEPS * e.steps:
            whys.append(f"{e.failures / e.steps:.0%} of its steps failed")
        if e.saturated:  # CPU >= 90%, or the loop behind all second (runner.load.health)
            busy = cpu is not None and cpu >= SATURATED_CPU
            whys.append(f"saturated (CPU {cpu:.0%})" if busy and cpu is not None else "saturated (loop lag)")
        levels.append(CapacityLevel(t, planned, made, cpu, lag, ", ".join(whys)))
    value = 0.0
    limited_by = ""
    bad = 0
    for i, level in enumerate(levels):
        bad = 0 if level.healthy else bad + 1
        if bad >= BAD_IN_A_ROW:
            first_bad = levels[i - BAD_IN_A_ROW + 1]
            limited_by = f"at {first_bad.planned:,.0f} {unit}: {first_bad.why}"
            break
        if level.healthy:
            value = level.planned
    bound = cpu_bound(levels, value) if ramp.model == "open" else None
    if bound is not None and bound < value:
        value = bound
    if not limited_by and levels and not levels[-1].healthy:  # the top was reached, but unhealthy
        last = levels[-1]
        limited_by = f"at {last.planned:,.0f} {unit}, its last second: {last.why}"
    unmeasured = ""
    # (held users end no iteration: their ramp is judged on its steps alone)
    if result.iterations.completed == 0 and not ramp.hold:  # failing fast is cheap: not the scenario's
        first = next((e.message for st in result.steps for e in st.errors), "")
        unmeasured = "no iteration of the ramp completed" + (f" (first error: {first})" if first else "")
    elif found := measurement_problems(
        result.steps,
        result.iterations,
        interrupted=result.interrupted,
        hold=ramp.hold,
        duration_s=result.duration_s,
    ):  # operations stalled or never completed, an internal error (not the plan checks: a ramp
        # is meant to end beyond what the generator can deliver)
        unmeasured = f"the ramp did not measure the scenario: {found[0]}"
    if unmeasured:
        value, limited_by = 0.0, unmeasured
    return Capacity(unit, value, tuple(levels), limited_by, bool(unmeasured))


def cpu_bound(levels: Sequence[CapacityLevel], value: float) -> float | None:
    """The rate the healthy seconds up to ``value`` could hold at ``SATURATED_CPU`` of a core,
    from the CPU they spent per start made (None: nothing to go by)."""
    spent = made = 0.0
    for level in levels:
        if level.planned > value:
            break
        if level.healthy and level.cpu is not None and level.made > 0:
            spent += level.cpu
            made += level.made
    if spent <= 0 or made <= 0:
        return None
    return float(round(SATURATED_CPU / (spent / made)))


def render(scenario: Scenario, capacity: Capacity, *, workers: int, target: str) -> str:
    """The finding for the console: a few of the levels, the capacity and what to plan."""
    lines = [f"capacity of {scenario.name} ({scenario.file}) against {target}, {workers} worker(s):"]
    step = max(1, len(capacity.levels) // 12)
    shown: Sequence[CapacityLevel] = capacity.levels[::step]
    for level in shown:
        cpu = "-" if level.cpu is None else f"{level.cpu:.0%}"
        lag = "-" if level.loop_lag_ms is None else f"{level.loop_lag_ms:.1f}ms"  # the second's largest
        state = "ok" if level.healthy else level.why
        lines.append(
            f"  {level.second:4d}s  planned {level.planned:8,.0f}  made {level.made:8,.0f}  "
            f"cpu {cpu:>4}  lag max {lag:>8}  {state}"
        )
    unit = capacity.unit
    if capacity.unmeasured:
        lines.append(f"CAPACITY none: {capacity.limited_by}")
        return "\n".join(lines) + "\n"
    if capacity.value <= 0:
        lines.append(
            "CAPACITY none: the generator was not healthy at any level "
            f"({capacity.limited_by or 'see above'})"
        )
        return "\n".join(lines) + "\n"
    flag = "--rate" if unit == "starts/s" else "--vus"
    end = (
        f"; it ended {capacity.limited_by}"
        if capacity.limited_by
        else f" (the top of the ramp: try a higher {flag})"
    )
    suggested = f"{capacity.suggested:,.0f}"
    lines.append(
        f"CAPACITY about {capacity.value:,.0f} {unit} while healthy{end}. "
        f"Plan at most {suggested} {unit} ({HEADROOM:.0%}): {flag} {suggested.replace(',', '')}"
    )
    return "\n".join(lines) + "\n"
