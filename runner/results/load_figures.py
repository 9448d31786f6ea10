"""The figures of a load run as typed records: what the report's ``settings.load`` holds.

The records hold what the report holds (figures rounded as written), so a report read back has
the same figures, thresholds on them see the same values, and writing it again gives the same
bytes. ``runner.load.result`` measures them from a recorder and the plan; ``runner.results.codec``
writes and reads them; reports only read them.

Latencies here are maps of percentile name to milliseconds (``p50`` ... ``min``, as
``LatencySummary.percentiles()`` gives): readers look a percentile up by its name (a threshold's
``stat``, a chart's series), and a report written by hand may hold only some of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runner.scenario.model import Stage

__all__ = ["GeneratorFigures", "LoadSummary", "PlanFigures", "SaturationBounds", "WorkerFigures"]


@dataclass(frozen=True, slots=True)
class PlanFigures:
    """What the plan asked for and what was delivered over the same schedule.

    Open model: ``planned`` starts due by ``window_s`` (the plan's end, or when the run was
    stopped), ``made`` of them, ``dropped_starts`` at ``max_vus``. Closed model: ``planned`` and
    ``made`` are user-seconds (the planned and the active users summed over the run's whole
    seconds). ``delivered`` = made / planned, ``dropped`` = dropped / planned (fractions, open
    model only); None without a plan to measure against.
    """

    model: str
    window_s: float
    planned: float
    made: float
    dropped_starts: int = 0
    delivered: float | None = None
    dropped: float | None = None

    @classmethod
    def measured(
        cls, model: str, window_s: float, planned: float, made: float, dropped_starts: int = 0
    ) -> PlanFigures:
        """The figures of a plan, the fractions computed and everything rounded as reported."""
        delivered = made / planned if planned > 0 else None
        dropped = dropped_starts / planned if model == "open" and planned > 0 else None
        return cls(
            model=model,
            window_s=round(window_s, 3),
            planned=round(planned, 3),
            made=round(made, 3),
            dropped_starts=dropped_starts,
            delivered=None if delivered is None else round(delivered, 6),
            dropped=None if dropped is None else round(dropped, 6),
        )


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """One generating process over the run (``runner.load.health``)."""

    name: str
    seconds: int
    cpu_mean: float
    cpu_max: float
    loop_lag_ms: Mapping[str, float] | None
    saturated_seconds: int
    send_blocked_max: int


@dataclass(frozen=True, slots=True)
class SaturationBounds:
    """When a worker counts as saturated in a second: this CPU share of one core, or this
    event-loop lag (``runner.load.health``); written beside the figures so charts can draw them."""

    cpu: float
    loop_lag_ms: float


@dataclass(frozen=True, slots=True)
class GeneratorFigures:
    """The load generator's health over the run: per worker, and all together.

    ``saturated_seconds``: seconds of the run in which any worker was saturated;
    ``saturated_share``: their share of the seconds measured; ``samples_in_saturated``: the share
    of step executions that ended in those seconds, i.e. how much of the measured latency may
    carry the generator's own delay; ``cpu_max``: the busiest worker's, None without workers;
    ``saturated_when``: the bounds the workers were judged by (None: a report without them).
    """

    workers: tuple[WorkerFigures, ...]
    seconds: int
    saturated_seconds: int
    samples_in_saturated: float
    loop_lag_ms: Mapping[str, float] | None
    saturated_when: SaturationBounds | None
    saturated_share: float | None = None
    cpu_max: float | None = None

    @classmethod
    def measured(
        cls,
        workers: tuple[WorkerFigures, ...],
        *,
        seconds: int,
        saturated_seconds: int,
        samples_in_saturated: float,
        loop_lag_ms: Mapping[str, float] | None,
        saturated_when: SaturationBounds | None,
    ) -> GeneratorFigures:
        """The figures with the share and the busiest worker computed, rounded as reported."""
        return cls(
            workers=workers,
            seconds=seconds,
            saturated_seconds=saturated_seconds,
            samples_in_saturated=round(samples_in_saturated, 6),
            loop_lag_ms=loop_lag_ms,
            saturated_when=saturated_when,
            saturated_share=round(saturated_seconds / seconds, 6) if seconds else None,
            cpu_max=max((w.cpu_max for w in workers), default=None),
        )


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """A load run's figures (``settings.load`` of the report).

    From the plan and the recorder (the same for a local run and a merge of shards): the load
    shape, iterations, the achieved rate, starts made and dropped, the schedule lag (open model)
    and the iteration latency from the intended start, failure pauses, ``plan`` and
    ``generator``. From the run: workers and why that many, the most users and connections
    active at once, source addresses, the open-files limit, workers that ended early, why the run
    stopped early. A merge of shard reports adds which shards were merged and which are missing
    (``shards`` is then the shard count) and has no one open-files limit.

    Defaults stand for figures a report did not hold (one written by an earlier version).
    """

    model: str
    vus: int | None = None
    max_vus: int | None = None
    planned_duration_s: float | None = None
    #: Closed model: per virtual user (``iterations_per_vu`` in the report); open: in total.
    iterations: int | None = None
    iterations_done: int = 0
    rate: float | None = None
    achieved_rate: float = 0.0
    started: int = 0
    dropped: int = 0
    lag_ms: Mapping[str, float] | None = None
    iteration_ms: Mapping[str, float] | None = None
    failure_pauses: int = 0
    failure_pause_s: float = 0.0
    failure_pause_first_s: float = 0.05
    failure_pause_max_s: float = 1.0
    graceful_stop_s: float = 5.0
    think_time_s: float = 0.0
    pace_s: float | None = None
    ramp_up_s: float = 0.0
    hold: bool = False
    stages: tuple[Stage, ...] = ()
    plan: PlanFigures | None = None
    generator: GeneratorFigures | None = None
    workers: int = 1
    workers_reason: str = ""
    vus_max_active: int | None = None
    connections_max: int | None = None
    source_addresses: tuple[str, ...] = ()
    nofile: int | None = None
    #: Worker numbers (a local run), or texts such as "shard 2 worker 1" and "shard 3 (missing)".
    incomplete_workers: tuple[int | str, ...] = ()
    stop_reason: str = ""
    shards: int | None = None
    shards_merged: tuple[int, ...] = ()
    shards_missing: tuple[int, ...] = ()
