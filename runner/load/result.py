"""The finished load run as a ``RunResult``: the check run's result plus what only load measures,
and the verdict on the plan: did the generator deliver what was asked, and were its own delays
small enough that the latencies are the server's?

Load figures go into ``settings.load``, a ``runner.results.load_figures.LoadSummary``: model,
workers, users, iterations, achieved rate, schedule lag, dropped starts, iteration latency from
the intended start, failure pauses, incomplete workers, why the run stopped early, ``plan``
(``PlanFigures``) and ``generator`` (``GeneratorFigures``). This module measures them.

Every load run gets the plan checks (``plan_checks``) as thresholds marked ``default``: a user's
own threshold on the same ``SUBJECT.STAT`` replaces one, so they are set and relaxed like any
threshold. A lost plan check fails the run with a message that says what was missing and what
to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from runner.checks.thresholds import evaluate, parse_threshold
from runner.load.health import LOOP_LAG_BOUND_S, SATURATED_CPU
from runner.load.limits import LimitPlan, default_max_vus
from runner.results.load_figures import (
    GeneratorFigures,
    LoadSummary,
    PlanFigures,
    SaturationBounds,
    WorkerFigures,
)
from runner.results.recorders import LatencyHistogram, RunRecorder
from runner.results.result import (
    LatencySummary,
    RunResult,
    RunSettings,
    ThresholdResult,
    TlsInfo,
    build_result,
)
from runner.scenario.model import LoadSpec, Location, Scenario, Threshold
from runner.scenario.plan import closed_plan, plan_duration, planned_starts, planned_vus, shard_count
from runner.steps.sleep import draws_waits

__all__ = [
    "default_checks",
    "generator_figures",
    "load_figures",
    "load_result",
    "load_summary_line",
    "plan_checks",
    "plan_figures",
    "plan_problem",
    "run_errors",
    "with_defaults",
    "with_plan_checks",
]

#: The plan checks every load run gets unless the scenario or command line sets its own
#: threshold on the same name (see the module docstring); documented in the README.
PLAN_DELIVERED = "plan.delivered >= 95%"
PLAN_DROPPED = "plan.dropped <= 1%"
SCHEDULE_LAG = "schedule_lag.p99 <= 50ms"
SATURATED = "generator.saturated <= 10%"
#: What ``plan_problem`` offers as an example of relaxing each plan check.
_RELAXED = {
    PLAN_DELIVERED: "plan.delivered >= 80%",
    PLAN_DROPPED: "plan.dropped <= 5%",
    SCHEDULE_LAG: "schedule_lag.p99 <= 200ms",
    SATURATED: "generator.saturated <= 50%",
}


def _ms(hist: LatencyHistogram) -> dict[str, float] | None:
    summary = LatencySummary.of(hist.summary())
    return summary.percentiles() if summary else None


def _window(load: LoadSpec, duration_s: float, stopped_at_s: float | None) -> float:
    """The part of the run the plan is judged over: until the plan's end, or the stop."""
    planned_s = plan_duration(load)
    window = duration_s if planned_s is None else min(duration_s, planned_s)
    if stopped_at_s is not None:
        window = min(window, stopped_at_s)
    return max(window, 0.0)


def plan_figures(
    load: LoadSpec,
    total: RunRecorder,
    duration_s: float,
    stopped_at_s: float | None,
    shard: tuple[int, int] = (0, 1),
) -> PlanFigures:
    """The plan against what was delivered; ``shard`` (0-based index, count): a shard run's own
    share of the plan (the engine's ``shard_count`` / ``shard_starts`` split)."""
    k, n = shard
    planned_s = plan_duration(load)
    window = _window(load, duration_s, stopped_at_s)
    if load.model == "open":
        lr = total.load
        due = shard_count(planned_starts(load, window), k, n)
        return PlanFigures.measured("open", window, float(due), float(lr.started), lr.dropped)
    if planned_s is None:  # bounded by iterations only: users leave when done, no schedule to meet
        return PlanFigures.measured("closed", window, 0.0, 0.0)
    plan = closed_plan(load)
    planned = made = 0.0
    for second in total.timeseries.samples():
        if second.t < 1 or second.t >= window or second.vus is None:
            continue
        want = shard_count(planned_vus(plan, float(second.t)), k, n)
        planned += want
        made += min(second.vus, want)  # more users than planned in one second makes up for no shortfall
    return PlanFigures.measured("closed", window, planned, made)


def generator_figures(total: RunRecorder) -> GeneratorFigures:
    """The generator's health per worker and over all of them (``runner.load.health``)."""
    workers = []
    all_lag = LatencyHistogram()
    saturated: set[int] = set()
    seen: set[int] = set()
    for name in sorted(total.health.workers, key=lambda n: (len(n), n)):
        w = total.health.workers[name]
        cpus = [cpu for cpu, _lag, _blocked, _sat in w.seconds.values()]
        sat = [t for t, (_cpu, _lag, _blocked, is_sat) in w.seconds.items() if is_sat]
        saturated.update(sat)
        seen.update(w.seconds)
        all_lag.merge(w.lag.serialize())
        workers.append(
            WorkerFigures(
                name=name,
                seconds=len(w.seconds),
                cpu_mean=round(sum(cpus) / len(cpus), 3) if cpus else 0.0,
                cpu_max=max(cpus, default=0.0),
                loop_lag_ms=_ms(w.lag),
                saturated_seconds=len(sat),
                send_blocked_max=max((blocked for _c, _l, blocked, _s in w.seconds.values()), default=0),
            )
        )
    samples = in_saturated = 0
    for second in total.timeseries.samples():
        samples += second.steps
        if second.t in saturated:
            in_saturated += second.steps
    return GeneratorFigures.measured(
        tuple(workers),
        seconds=len(seen),
        saturated_seconds=len(saturated),
        samples_in_saturated=in_saturated / samples if samples else 0.0,
        loop_lag_ms=_ms(all_lag),
        saturated_when=SaturationBounds(SATURATED_CPU, LOOP_LAG_BOUND_S * 1000),
    )


def load_figures(
    load: LoadSpec,
    total: RunRecorder,
    *,
    duration_s: float,
    stopped_at_s: float | None = None,
    shard: tuple[int, int] = (0, 1),
) -> LoadSummary:
    """The figures of ``settings.load`` that come from the plan and the recorder (the same for
    a local run and a merge of shards); the run's own (workers, limits...) are left at their
    defaults for the caller to set."""
    lr = total.load
    plan = plan_figures(load, total, duration_s, stopped_at_s, shard)
    ended = total.iterations_completed + total.iterations_failed
    window = _window(load, duration_s, stopped_at_s)
    if load.model == "open" and window > 0:
        achieved = round(lr.started / window, 3)
    else:
        achieved = round(ended / duration_s, 3) if duration_s > 0 else 0.0
    return LoadSummary(
        model=load.model,
        vus=load.vus if load.model == "closed" else None,
        max_vus=(load.max_vus or default_max_vus(load)) if load.model == "open" else None,
        planned_duration_s=plan_duration(load),
        iterations=load.iterations,
        iterations_done=ended,
        rate=load.rate,
        achieved_rate=achieved,
        started=lr.started if load.model == "open" else total.iterations_started,
        dropped=lr.dropped,
        lag_ms=_ms(lr.lag) if load.model == "open" else None,
        iteration_ms=_ms(lr.iteration),
        failure_pauses=lr.pauses,
        failure_pause_s=round(lr.pause_ns / 1e9, 3),
        failure_pause_first_s=load.failure_pause_first_s,
        failure_pause_max_s=load.failure_pause_max_s,
        graceful_stop_s=load.graceful_stop_s,
        think_time_s=load.think_time_s,
        pace_s=load.pace_s,
        ramp_up_s=load.ramp_up_s,
        hold=load.hold,
        stages=load.stages,
        plan=plan,
        generator=generator_figures(total),
    )


def plan_checks(load: LoadSpec) -> tuple[Threshold, ...]:
    """The default plan checks of a load run of ``load`` (module docstring)."""
    exprs = [SATURATED]
    if load.model == "open":
        exprs = [PLAN_DELIVERED, PLAN_DROPPED, SCHEDULE_LAG, SATURATED]
    elif plan_duration(load) is not None:
        exprs = [PLAN_DELIVERED, SATURATED]
    return default_checks(exprs)


def default_checks(exprs: Sequence[str]) -> tuple[Threshold, ...]:
    """Plan checks from their expressions, marked ``default``. One without data (a merge of
    reports written before health was measured) cannot judge: it passes, saying so."""
    where = Location("plan", 0, 0)
    return tuple(
        replace(
            parse_threshold(e, step_names=(), kinds=(), location=where), default=True, accept_no_data=True
        )
        for e in exprs
    )


def with_defaults(thresholds: Sequence[Threshold], defaults: Sequence[Threshold]) -> tuple[Threshold, ...]:
    """``thresholds`` and the ``defaults`` they do not set themselves (same ``SUBJECT.STAT``)."""
    own = {(t.subject, t.stat) for t in thresholds}
    return tuple(thresholds) + tuple(t for t in defaults if (t.subject, t.stat) not in own)


def with_plan_checks(thresholds: Sequence[Threshold], load: LoadSpec) -> tuple[Threshold, ...]:
    """The scenario's thresholds and the plan checks it does not set itself."""
    return with_defaults(thresholds, plan_checks(load))


def _busy_with(worker: WorkerFigures) -> str:
    """What kept a worker saturated: its CPU, or (CPU to spare) its event loop's lag."""
    lag = (worker.loop_lag_ms or {}).get("max")
    if worker.cpu_max >= SATURATED_CPU or lag is None:
        return f"CPU up to {worker.cpu_max:.0%}"
    return f"event loop behind by up to {lag:,.0f} ms with CPU up to {worker.cpu_max:.0%}"


def plan_problem(result: RunResult, verdicts: Sequence[ThresholdResult]) -> str:
    """The message of a run whose plan checks were lost: what was missing, what to do; '' if none."""
    lost = [v for v in verdicts if v.default and not v.passed]
    if not lost:
        return ""
    load = result.settings.load
    gen = load.generator if load is not None else None
    plan = load.plan if load is not None else None
    facts = [f"{v.expression}: {v.message}" for v in lost]
    busy = [
        w
        for w in (gen.workers if gen is not None else ())
        if w.cpu_max >= SATURATED_CPU or w.saturated_seconds
    ]
    if busy and gen is not None:
        names = ", ".join(f"worker {w.name} {_busy_with(w)}" for w in busy)
        facts.append(f"the generator was saturated in {gen.saturated_seconds} s ({names})")
    if plan is not None and plan.model == "open" and plan.planned:
        facts.append(f"made {plan.made:,.0f} of {plan.planned:,.0f} planned starts")
    advice = (
        "the load generator, not the server, may be the bottleneck: add workers (--workers N), "
        "spread the run over machines (--shard K/N or --cluster), or lower the load"
    )
    if any(v.expression == PLAN_DROPPED for v in lost) and not busy:
        advice = "starts were dropped because max_vus users were all busy: raise max_vus (--max-vus)"
    example = _RELAXED.get(lost[0].expression, "")
    relax = "; to accept it, set your own threshold on that name" + (
        f" (e.g. --threshold '{example}')" if example else ""
    )
    return "plan not delivered: " + "; ".join(facts) + "; " + advice + relax


def run_errors(
    problems: Sequence[str], incomplete_workers: Sequence[int | str], workers: int | None, stop_reason: str
) -> list[str]:
    """What fails a load run beside its measurements: its workers' problems, workers that ended
    before it did, an abort or an internal error that stopped it."""
    errors = list(problems)
    if incomplete_workers:
        of = f" of {workers}" if workers else ""
        errors.append(
            "incomplete: worker(s) "
            + ", ".join(str(w) for w in incomplete_workers)
            + f"{of} ended before the run did; their last interval is lost, "
            "the other workers' results are kept"
        )
    if stop_reason.startswith(("aborted", "internal error")):
        errors.append(stop_reason)
    return errors


def load_result(
    scenario: Scenario,
    total: RunRecorder,
    *,
    started_at: str,
    duration_s: float,
    target: str,
    limits: LimitPlan,
    max_vus: int,
    max_connections: int,
    interrupted: bool = False,
    stop_reason: str = "",
    stopped_at_s: float | None = None,
    incomplete_workers: Sequence[int] = (),
    problems: Sequence[str] = (),
    tls: TlsInfo | None = None,
    shard: tuple[int, int] = (0, 1),
) -> RunResult:
    """Freeze ``total`` with the load settings; thresholds and plan checks evaluated (``shard``:
    a shard run, whose plan is its share)."""
    load = scenario.load
    assert load is not None
    summary = replace(
        load_figures(load, total, duration_s=duration_s, stopped_at_s=stopped_at_s, shard=shard),
        workers=limits.workers,
        workers_reason=limits.reason,
        vus_max_active=max_vus,
        connections_max=max_connections,
        source_addresses=tuple(limits.source_addresses),
        nofile=limits.nofile,
        incomplete_workers=tuple(incomplete_workers),
        stop_reason=stop_reason,
    )
    errors = run_errors(problems, incomplete_workers, limits.workers, stop_reason)
    result = build_result(
        total,
        scenario_name=scenario.name,
        scenario_file=scenario.file,
        started_at=started_at,
        duration_s=duration_s,
        target=target,
        interrupted=interrupted,
        error="; ".join(errors),
        tls=tls,
        settings=RunSettings(
            mode="load",
            read_timeout_s=scenario.read_timeout_s,
            load=summary,
            seed=scenario.seed if draws_waits(scenario.steps) else None,
        ),
        hold=load.hold,
    )
    return evaluate_load(result, scenario.thresholds, load)


def evaluate_load(result: RunResult, thresholds: Sequence[Threshold], load: LoadSpec) -> RunResult:
    """``result`` with its thresholds and the plan checks evaluated; a lost plan check adds the
    plan problem (what was missing, what to do) to the run's problems."""
    verdicts = evaluate(with_plan_checks(thresholds, load), result)
    result = result.with_thresholds(verdicts)
    problem = plan_problem(result, verdicts)
    if not problem:
        return result
    return replace(
        result,
        problems=(*result.problems, problem),
        error="; ".join(x for x in (result.error, problem) if x),
    )


def load_summary_line(result: RunResult) -> str:
    """One console line with the load figures (printed after the usual report)."""
    load = result.settings.load
    if load is None:
        return ""
    it = result.iterations
    parts = [
        f"load: plan of {len(result.populations)} populations"
        if result.populations
        else f"load: {load.model} model",
        f"{load.workers} worker(s)",
        f"max {load.vus_max_active or 0:,} VUs",
        f"iterations {it.completed:,} completed, {it.failed:,} failed, {it.interrupted:,} interrupted",
    ]
    plan = load.plan
    if load.model == "open":
        of = f" of {plan.planned:,.0f} planned" if plan is not None and plan.planned else ""
        delivered = plan.delivered if plan is not None else None
        pct = f" ({delivered:.1%})" if delivered is not None else ""
        parts.append(f"{load.started:,} starts{of}{pct}")
        lag = load.lag_ms or {}
        parts.append(
            f"schedule lag p50 {lag.get('p50', 0):g}ms p99 {lag.get('p99', 0):g}ms "
            f"max {lag.get('max', 0):g}ms"
        )
        parts.append(f"{load.dropped:,} dropped (max_vus)")
    elif plan is not None and plan.delivered is not None:
        parts.append(f"users delivered {plan.delivered:.1%} of the plan")
    if load.failure_pauses:
        parts.append(
            f"{load.failure_pauses:,} pauses after failed iterations ({load.failure_pause_s:g}s in all)"
        )
    gen = load.generator
    if gen is not None and gen.workers:
        glag = gen.loop_lag_ms or {}
        parts.append(
            f"generator: CPU up to {gen.cpu_max or 0:.0%}, loop lag p99 {glag.get('p99', 0):g}ms, "
            f"{gen.saturated_seconds} of {gen.seconds} s saturated"
        )
    if load.incomplete_workers:
        parts.append("INCOMPLETE workers " + ", ".join(str(w) for w in load.incomplete_workers))
    if load.stop_reason:
        parts.append(load.stop_reason)
    return ", ".join(parts)
