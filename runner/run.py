"""One way to run a scenario: a typed request, and the one function that runs it.

``RunRequest`` says everything that decides how one scenario runs: where, with what load
overrides, on how many workers, as a shard of a plan or over a Dask cluster. ``mode_of`` decides
the mode (pure: a check, a load run in this machine, a shard, a cluster run) and ``run`` runs it.
The command line (``wsload run``, with ``--every``) and the pytest plugin both come here; below
it, one ``ShardDriver`` (``runner.load.driver``) owns the engine of a process or a shard.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from runner.cluster.dask_runner import StopFlag, run_on_cluster
from runner.cluster.shard import run_shard
from runner.engine.check import run_check
from runner.errors import UsageError
from runner.load.monitor import LiveView, Progress
from runner.load.run import run_load
from runner.load.settings import LoadOverrides, is_load_run, parse_threshold
from runner.results.result import RunResult
from runner.runtime import on_stop_signals
from runner.scenario.model import Scenario

__all__ = ["Mode", "RunRequest", "ShardSpec", "mode_of", "run"]


class Mode(StrEnum):
    CHECK = "check"  # one virtual user, one iteration
    LOAD = "load"  # the load in this machine (one process, or worker processes)
    SHARD = "shard"  # shard K of N of the load, in this process
    CLUSTER = "cluster"  # the load over a Dask cluster's workers, coordinated from here


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int


@dataclass(frozen=True, slots=True)
class RunRequest:
    """How to run one scenario (see the module docstring). ``workers`` None: the file's
    ``load.workers``, else decided by the load's size; ``check``: once, even with a ``load:``
    section; ``start_unix_ns``: the shared start of shards (``--start-at``)."""

    scenario: Scenario
    target: str | None = None
    overrides: LoadOverrides = field(default_factory=LoadOverrides)
    workers: int | None = None
    default_workers: int | None = None  # a load run's workers when ``workers`` is None (WSLOAD_WORKERS)
    check: bool = False
    shard: ShardSpec | None = None
    cluster: str | None = None
    start_unix_ns: int | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    progress: bool = True
    handle_signals: bool = True
    seed: int | None = None  # --seed: of the users' drawn think times, over the file's ``seed:``
    live: LiveView | None = None  # a live view of load runs (--dashboard)


def seeded(scenario: Scenario, seed: int | None = None) -> Scenario:
    """The scenario with the seed its users draw think times from: ``seed`` (``--seed``), else
    the file's, else a new one (written in the report, so ``--seed`` can replay it)."""
    chosen = seed if seed is not None else scenario.seed
    if chosen is None:
        chosen = secrets.randbits(32)
    populations = tuple(
        p if p.seed is not None and seed is None and scenario.seed is None else replace(p, seed=chosen)
        for p in scenario.populations
    )
    if chosen == scenario.seed and populations == scenario.populations:
        return scenario
    return replace(scenario, seed=chosen, populations=populations)


def mode_of(request: RunRequest) -> Mode:
    """The mode a request runs in: ``--check`` first, then a cluster or a shard, then a load run
    when the file or the command line asks for one, else a check."""
    if request.check:
        return Mode.CHECK
    if request.cluster:
        return Mode.CLUSTER
    if request.shard is not None:
        return Mode.SHARD
    if is_load_run(request.scenario, request.overrides, request.workers):
        return Mode.LOAD
    return Mode.CHECK


async def run(request: RunRequest) -> RunResult:
    """Run the request in its mode and return the result, thresholds and plan checks evaluated."""
    request = replace(request, scenario=seeded(request.scenario, request.seed))
    mode = mode_of(request)
    progress = Progress() if request.progress else None
    if mode is Mode.CHECK:
        scenario = request.scenario
        if scenario.populations:
            raise UsageError(
                f"{scenario.file} is a plan of populations, which runs as a load run; check one "
                "population's scenario on its own (wsload run FILE --check)"
            )
        if request.overrides.thresholds:  # --threshold judges a check too
            extra = tuple(parse_threshold(t, scenario) for t in request.overrides.thresholds)
            scenario = replace(scenario, thresholds=scenario.thresholds + extra)
        return await run_check(scenario, target=request.target, handle_signals=request.handle_signals)
    if mode is Mode.LOAD:
        return await run_load(
            request.scenario,
            target=request.target,
            overrides=request.overrides,
            workers=request.workers if request.workers is not None else request.default_workers,
            progress=progress,
            variables=request.variables,
            handle_signals=request.handle_signals,
            live=request.live,
        )
    if mode is Mode.SHARD:
        assert request.shard is not None
        return await run_shard(
            request.scenario,
            index=request.shard.index,
            count=request.shard.count,
            target=request.target,
            overrides=request.overrides,
            start_unix_ns=request.start_unix_ns,
            progress=progress,
            handle_signals=request.handle_signals,
            live=request.live,
        )
    assert request.cluster is not None
    flag = StopFlag()
    with on_stop_signals(lambda signum: flag.set(f"interrupted by signal {signum}")):
        return await asyncio.to_thread(
            run_on_cluster,
            request.scenario.file,
            dict(request.variables),
            request.target,
            request.overrides,
            request.cluster,
            shards=request.workers,
            start_unix_ns=request.start_unix_ns,
            progress=progress,
            stop=flag,
            live_view=request.live,
        )
