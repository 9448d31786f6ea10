"""A plan's populations in one run: their contexts, the run-wide recorder, and the result.

Each population records into its own ``RunRecorder`` (``root.populations[name]``), so its
figures, plan checks and thresholds are its own exactly as if it ran alone; the process's health
and the gauges of all together stay in the root. The run as a whole (``flatten``) is the
populations' recorders added up with each step named ``POPULATION/STEP``: the plan's own
thresholds (run-wide subjects and step kinds) are judged on it, and it is the step table, the
time series and the failure groups every report shows. The plan passes when it and every
population pass; each population's thresholds appear in the run's list as ``POPULATION/EXPR``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from runner.checks.thresholds import evaluate
from runner.engine.check import tls_info
from runner.engine.vu import RunContext
from runner.load.limits import LimitPlan
from runner.load.merge import (
    MergeError,
    ShardReport,
    check_compatible,
    flatten,
    iso_time,
    merge_recorders,
    merged,
    shard_info,
)
from runner.load.result import (
    SATURATED,
    default_checks,
    load_figures,
    load_result,
    plan_problem,
    run_errors,
    with_defaults,
)
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult, RunSettings, TlsInfo, build_result
from runner.scenario.model import LoadSpec, Scenario, Threshold

__all__ = ["combine", "contexts", "merge_plan", "plan_result", "plan_tls", "shard_populations"]


def contexts(plan: Scenario, root: RunRecorder, target: str | None, extra_ca: str | None) -> list[RunContext]:
    """One context per population, recording into its own recorder under ``root``."""
    return [RunContext(p, root.population(p.name), target, extra_ca) for p in plan.populations]


def plan_tls(populations: Sequence[RunContext]) -> TlsInfo:
    """How certificates were treated, over every population's opens."""
    infos = [tls_info(c.scenario, c) for c in populations]
    return TlsInfo(
        verified=all(i.verified for i in infos),
        ignored_errors=tuple(sorted({e for i in infos for e in i.ignored_errors})),
        allowed=tuple(sorted({e for i in infos for e in i.allowed})),
    )


@dataclass(frozen=True, slots=True)
class PlanOf:
    """What judging a plan as a whole needs of it (a shard report keeps just this)."""

    name: str
    file: str
    load: LoadSpec
    thresholds: tuple[Threshold, ...]
    seed: int | None = None  # the run's seed of drawn think times (--seed replays it)


def _own_reason(name: str, stop_reason: str, whole_stop: bool) -> str:
    """A population's share of the run's stop reason: the whole run's, or the one it gave
    itself (``NAME: reason``, e.g. its data file ran out)."""
    if whole_stop:
        return stop_reason
    prefix = f"{name}: "
    return stop_reason.removeprefix(prefix) if stop_reason.startswith(prefix) else ""


def plan_result(
    plan: Scenario,
    root: RunRecorder,
    *,
    started_at: str,
    duration_s: float,
    target: str,
    limits: LimitPlan,
    max_connections: int,
    interrupted: bool = False,
    stop_reason: str = "",
    stopped_at_s: float | None = None,
    incomplete_workers: Sequence[int] = (),
    problems: Sequence[str] = (),
    tls: TlsInfo | None = None,
    shard: tuple[int, int] = (0, 1),
    own_stops: Mapping[str, tuple[str, float]] | None = None,
    max_active: Sequence[int] = (),
) -> RunResult:
    """The plan's result: each population's own (``RunResult.populations``), and the whole
    judged on the plan's thresholds and every population's verdict (module docstring).
    ``own_stops``: populations that ended themselves (their data ran out) -> (reason, seconds
    after the start): each is judged on its plan up to there, as a lone scenario is."""
    assert plan.load is not None
    whole_stop = stopped_at_s is not None
    results = []
    for i, p in enumerate(plan.populations):
        own = copy.copy(root.population(p.name))
        own.health = root.health  # the generator is the process's: its figures are every population's
        vus = [s.vus for s in own.timeseries.samples() if s.vus is not None]
        ended = (own_stops or {}).get(p.name)
        reason = _own_reason(p.name, stop_reason, whole_stop) or (ended[0] if ended else "")
        at_s = stopped_at_s if whole_stop else (ended[1] if ended else None)
        results.append(
            load_result(
                p,
                own,
                started_at=started_at,
                duration_s=duration_s,
                target=target,
                limits=limits,
                # the gauges sample once a second; the engines count every user (short
                # open-model iterations are seldom caught by a sample)
                max_vus=max([*vus, max_active[i] if i < len(max_active) else 0]),
                max_connections=max((s.connections or 0 for s in own.timeseries.samples()), default=0),
                interrupted=interrupted,
                stop_reason=reason,
                stopped_at_s=at_s,
                incomplete_workers=incomplete_workers,
                tls=tls,
                shard=shard,
            )
        )
    return combine(
        PlanOf(plan.name, plan.file, plan.load, plan.thresholds, plan.seed),
        flatten(root),
        tuple(results),
        started_at=started_at,
        duration_s=duration_s,
        target=target,
        limits=limits,
        max_connections=max_connections,
        interrupted=interrupted,
        stop_reason=stop_reason if whole_stop else "",
        stopped_at_s=stopped_at_s,
        incomplete_workers=incomplete_workers,
        problems=problems,
        tls=tls,
    )


def combine(
    plan: PlanOf,
    whole: RunRecorder,
    populations: tuple[RunResult, ...],
    *,
    started_at: str,
    duration_s: float,
    target: str,
    limits: LimitPlan | None,
    max_connections: int,
    interrupted: bool = False,
    stop_reason: str = "",
    stopped_at_s: float | None = None,
    incomplete_workers: Sequence[int | str] = (),
    problems: Sequence[str] = (),
    tls: TlsInfo | None = None,
    settings: RunSettings | None = None,
) -> RunResult:
    """The run as a whole from its flattened recorder and its populations' results (a local
    run, workers, a cluster and a merge of shard reports all end here)."""
    figures = load_figures(plan.load, whole, duration_s=duration_s, stopped_at_s=stopped_at_s)
    vus = [s.vus for s in whole.timeseries.samples() if s.vus is not None]
    summary = replace(
        figures,
        # A plan of populations has no one model, shape or user count: each has its own (its
        # own report says them); the whole says how many were active at most, all together.
        model="plan",
        vus=None,
        max_vus=None,
        rate=None,
        ramp_up_s=0.0,
        stages=(),
        iterations=None,
        plan=None,  # each population has its own plan and its own check of it
        vus_max_active=max(vus, default=0),
        connections_max=max_connections,
        incomplete_workers=tuple(incomplete_workers),  # type: ignore[arg-type]
        stop_reason=stop_reason,
    )
    if limits is not None:
        summary = replace(
            summary,
            workers=limits.workers,
            workers_reason=limits.reason,
            source_addresses=tuple(limits.source_addresses),
            nofile=limits.nofile,
        )
    errors = run_errors(problems, incomplete_workers, limits.workers if limits else None, stop_reason)
    base = settings or RunSettings(mode="load", read_timeout_s=None)
    result = build_result(
        whole,
        scenario_name=plan.name,
        scenario_file=plan.file,
        started_at=started_at,
        duration_s=duration_s,
        target=target,
        interrupted=interrupted,
        error="; ".join(errors),
        tls=tls,
        # The seed, where the README says to look for it, when any population draws its waits.
        settings=replace(
            base,
            mode="load",
            load=summary,
            seed=plan.seed if any(r.settings.seed is not None for r in populations) else base.seed,
        ),
        hold=True,  # "no iteration completed" is each population's to say, with its name
    )
    # The steps' problems are the populations' (named there); the whole adds its own and theirs.
    own = list(errors)
    theirs = [f"{r.scenario_name}: {p}" for r in populations for p in r.problems]
    found = own + theirs
    # The whole has one plan check of its own: one generator (each population has its plan's).
    verdicts = evaluate(with_defaults(plan.thresholds, default_checks([SATURATED])), result)
    # A population's generator check is the run's own (one generator): shown once.
    labelled = tuple(
        replace(v, expression=f"{r.scenario_name}/{v.expression}")
        for r in populations
        for v in r.thresholds
        if not (v.default and v.expression == SATURATED)
    )
    problem = plan_problem(result, verdicts)
    if problem:
        found.append(problem)
    passed = result.passed and not found and all(r.passed for r in populations)
    result = replace(
        result,
        passed=passed,
        exit_code=130 if interrupted else 0 if passed else 1,
        problems=tuple(found),
        error="; ".join(found),
        populations=populations,
    )
    return result.with_thresholds((*verdicts, *labelled))


def shard_populations(
    plan: Scenario,
    root: RunRecorder,
    results: Sequence[RunResult],
    *,
    index: int,
    count: int,
    start_unix_ns: int,
    lost: bool = False,
) -> tuple[RunResult, ...]:
    """Each population's result of shard ``index`` marked as its shard, holding its recorder
    (with the process's health) for an exact merge of that population (``merge_plan``)."""
    out = []
    for p, result in zip(plan.populations, results, strict=True):
        own = copy.copy(root.population(p.name))
        own.health = root.health
        info = shard_info(p, index=index, count=count, start_unix_ns=start_unix_ns, recorder=own, lost=lost)
        out.append(replace(result, settings=replace(result.settings, shard=info)))
    return tuple(out)


def bare(root: RunRecorder) -> RunRecorder:
    """``root`` without its populations: what a plan's own shard data keeps (each population
    keeps its own in its result's shard data)."""
    own = copy.copy(root)
    own.populations = {}
    return own


def merge_plan(shards: Sequence[ShardReport]) -> RunResult:
    """Shard reports of a plan merged exactly: each population's shards as one scenario's
    (``runner.load.merge.merged``), the whole judged on their sum (``combine``)."""
    check_compatible(shards)
    shards = sorted(shards, key=lambda s: s.shard.index)
    first = shards[0]
    names = [p.scenario_name for p in first.result.populations]
    results: list[RunResult] = []
    t0 = min(s.shard.start_unix_ns for s in shards)
    root = merge_recorders([(s.shard.recorder, round((s.shard.start_unix_ns - t0) / 1e9)) for s in shards])
    for name in names:
        parts = []
        for s in shards:
            own = next((p for p in s.result.populations if p.scenario_name == name), None)
            if own is None or own.settings.shard is None:
                raise MergeError(f"{s.name}: holds no shard data of population '{name}'")
            parts.append(ShardReport(s.name, own, own.settings.shard))
        result, recorder = merged(parts)
        results.append(result)
        root.populations[name] = recorder
    end = max(s.shard.start_unix_ns + int(s.result.duration_s * 1e9) for s in shards)
    conns = [x.connections for x in flatten(root).timeseries.samples() if x.connections is not None]
    whole = combine(
        PlanOf(
            first.result.scenario_name,
            first.result.scenario_file,
            first.shard.plan,
            first.shard.thresholds,
            first.result.settings.seed,
        ),
        flatten(root),
        tuple(results),
        started_at=iso_time(t0),
        duration_s=(end - t0) / 1e9,
        target=", ".join(sorted({s.result.target for s in shards})),
        limits=None,
        max_connections=max(conns, default=0),
        interrupted=any(s.result.interrupted for s in shards),
        tls=results[0].tls if results else None,
        settings=replace(first.result.settings, shard=None, merged_from=tuple(s.name for s in shards)),
    )
    load = whole.settings.load
    if load is not None:
        load = replace(
            load,
            workers=sum((s.result.settings.load.workers if s.result.settings.load else 1) for s in shards),
            workers_reason=f"{len(shards)} of {first.shard.count} shard(s) merged",
            shards=first.shard.count,
            shards_merged=tuple(s.shard.index for s in shards),
        )
        whole = replace(whole, settings=replace(whole.settings, load=load))
    return whole
