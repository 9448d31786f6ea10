"""The ramp and stage plan as pure functions: what should be running when, never how to wait.

The engine follows these plans (it does the sleeping); keeping them pure makes every ramp shape
testable without an event loop, and lets shards of one plan run on several processes or machines
while adding up to exactly the plan of one run.

Closed model: a list of ``VuChange(at_s, vus)``, the target number of virtual users from ``at_s``
on. Open model: the intended start times of scenario iterations, generated lazily because an
hour at 1,000/s is 3.6 million starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from runner.scenario.model import LoadSpec, Stage

__all__ = [
    "VuChange",
    "closed_changes",
    "closed_plan",
    "default_max_vus",
    "open_starts",
    "peak_vus",
    "plan_duration",
    "planned_starts",
    "planned_vus",
    "shard_count",
    "shard_starts",
]


@dataclass(frozen=True, slots=True)
class VuChange:
    """From ``at_s`` seconds after the start on, ``vus`` virtual users should be running."""

    at_s: float
    vus: int


def _closed_stages(load: LoadSpec) -> tuple[Stage, ...]:
    """Express ``vus`` + ``ramp_up`` + ``duration`` as stages, so one code path follows both."""
    if load.stages:
        return load.stages
    # Without a ramp every user starts at once: a zero-length stage jumps to the target.
    stages: list[Stage] = [Stage(load.ramp_up_s, float(load.vus))]
    hold = (load.duration_s or 0.0) - load.ramp_up_s
    stages.append(Stage(max(hold, 0.0), float(load.vus)))
    return tuple(stages)


def closed_plan(load: LoadSpec) -> tuple[VuChange, ...]:
    """Each change of the target VU count, one virtual user at a time, in time order.

    A stage moves linearly from the previous target to its own over its duration; the k-th user
    of a ramp from a to b over d seconds starts at ``d * (k - a) / (b - a)``. Without a ramp all
    users start at 0. The last change brings the count to 0 at the end of the last stage.
    """
    return tuple(closed_changes(load))


def closed_changes(load: LoadSpec) -> Iterator[VuChange]:
    """``closed_plan``'s changes one by one: the engine keeps them as two arrays (16 bytes a
    change, where the tuple of objects is 88: a ramp to 5,000 users holds 5,000 changes)."""
    current = 0
    t0 = 0.0
    for stage in _closed_stages(load):
        target = round(stage.target)
        if target != current:
            if stage.duration_s <= 0:
                yield VuChange(t0, target)
            else:
                step = 1 if target > current else -1
                span = target - current
                for k in range(current + step, target + step, step):
                    # Start users at the *beginning* of their slice, stop them at its end.
                    frac = (k - current - (step if step > 0 else 0)) / span
                    yield VuChange(t0 + stage.duration_s * abs(frac), k)
            current = target
        t0 += stage.duration_s
    if current != 0 and (load.stages or load.duration_s is not None):
        yield VuChange(t0, 0)


def plan_duration(load: LoadSpec) -> float | None:
    """How long the plan runs, or None when only an iteration count bounds it."""
    if load.stages:
        return sum(s.duration_s for s in load.stages)
    return load.duration_s


def _rate_segments(load: LoadSpec) -> list[tuple[float, float, float]]:
    """(duration, rate at start, rate at end) for each segment of an open-model plan."""
    if load.stages:
        segments = []
        previous = load.rate if load.rate is not None else 0.0
        for stage in load.stages:
            segments.append((stage.duration_s, previous, stage.target))
            previous = stage.target
        return segments
    rate = load.rate or 0.0
    ramp = load.ramp_up_s
    duration = load.duration_s if load.duration_s is not None else math.inf
    segments = []
    if ramp > 0:
        segments.append((ramp, 0.0, rate))
    segments.append((max(duration - ramp, 0.0), rate, rate))
    return segments


def open_starts(load: LoadSpec) -> Iterator[float]:
    """Intended start offsets (seconds) of every iteration of an open-model run.

    The i-th start (from 0) is the moment the integral of the rate reaches i: exact for constant
    rates and linear ramps alike, with no drift however long the run. Bounded by the plan's
    duration and by ``iterations`` when given.
    """
    limit = load.iterations if load.iterations is not None else math.inf
    issued = 0
    t0 = 0.0
    area0 = 0.0  # starts owed at t0
    for duration, r0, r1 in _rate_segments(load):
        slope = (r1 - r0) / duration if duration > 0 and math.isfinite(duration) else 0.0
        while issued < limit:
            need = issued - area0  # starts still to reach within this segment
            if slope == 0.0:
                if r0 <= 0:
                    break
                dt = need / r0
            else:
                # Solve r0*dt + slope*dt^2/2 = need for dt >= 0.
                disc = r0 * r0 + 2.0 * slope * need
                if disc < 0:
                    break
                dt = (-r0 + math.sqrt(disc)) / slope
            if dt >= duration or dt < 0:  # a start at the boundary belongs to the next segment
                break
            yield t0 + dt
            issued += 1
        if issued >= limit:
            return
        if math.isfinite(duration):
            area0 += r0 * duration + slope * duration * duration / 2.0
            t0 += duration
        else:
            return


def shard_starts(starts: Iterator[float], shard: int, shards: int) -> Iterator[float]:
    """The starts of one shard (0-based) of ``shards``: every shards-th start, interleaved, so
    each shard's rate follows the whole plan's shape and the shards add up to the plan."""
    for i, t in enumerate(starts):
        if i % shards == shard:
            yield t


def shard_count(total: int, shard: int, shards: int) -> int:
    """How many of ``total`` units (virtual users, iterations) shard ``shard`` of ``shards`` gets;
    the shares differ by at most one and add up to ``total``."""
    return total // shards + (1 if shard < total % shards else 0)


def planned_starts(load: LoadSpec, until_s: float) -> int:
    """How many starts ``open_starts`` makes before ``until_s``: the starts the plan had due by
    then (ramps and stages included), from the integral of the rate, without walking them."""
    limit = load.iterations if load.iterations is not None else math.inf
    area = 0.0
    t0 = 0.0
    for duration, r0, r1 in _rate_segments(load):
        span = min(duration, max(until_s - t0, 0.0))
        slope = (r1 - r0) / duration if duration > 0 and math.isfinite(duration) else 0.0
        area += r0 * span + slope * span * span / 2.0
        if not math.isfinite(duration) or until_s <= t0 + duration:
            break
        t0 += duration
    # The i-th start (from 0) is due when the integral reaches i: those with i < area.
    due = math.ceil(area - 1e-9) if area > 0 else 0
    return int(min(due, limit))


def planned_vus(plan: tuple[VuChange, ...], at_s: float) -> int:
    """The closed plan's target user count at ``at_s`` (0 before its first change)."""
    vus = 0
    for change in plan:
        if change.at_s > at_s:
            break
        vus = change.vus
    return vus


def default_max_vus(load: LoadSpec) -> int:
    """Open model without ``max_vus``: room for two seconds of the peak rate (at least 10, at
    least ``vus``), enough for iterations up to ~2 s before starts are dropped."""
    peak = max([load.rate or 0.0, *(s.target for s in load.stages)])
    return max(10, load.vus if load.max_vus is None else load.max_vus, math.ceil(peak * 2))


def peak_vus(load: LoadSpec) -> int:
    """The most virtual users the plan can have at once (all workers together)."""
    if load.model == "open":
        return load.max_vus if load.max_vus is not None else default_max_vus(load)
    return max([load.vus if not load.stages else 0, *(c.vus for c in closed_plan(load))])
