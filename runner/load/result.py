"""The finished load run as a ``RunResult``: the check run's result plus what only load measures.

Load figures go into ``settings["load"]`` (the report schema keeps ``settings`` open), so every
existing report shows them without a schema change: model, workers, VUs, iterations, achieved
rate, schedule lag, dropped starts, iteration latency from the intended start, incomplete
workers, and why the run stopped early.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.load.limits import LimitPlan, default_max_vus
from runner.load.plan import plan_duration
from runner.metrics import LatencyHistogram, RunRecorder
from runner.model import Scenario
from runner.results import LatencySummary, RunResult, TlsInfo, build_result
from runner.thresholds import evaluate

__all__ = ["load_result", "load_summary_line"]


def _ms(hist: LatencyHistogram) -> dict[str, float] | None:
    summary = LatencySummary.of(hist.summary())
    return summary.to_json() if summary else None


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
    incomplete_workers: Sequence[int] = (),
    problems: Sequence[str] = (),
    tls: TlsInfo | None = None,
) -> RunResult:
    """Freeze ``total`` with the load settings; thresholds evaluated (a lost one fails the run)."""
    load = scenario.load
    assert load is not None
    planned = plan_duration(load)
    lr = total.load
    window = min(duration_s, planned) if planned else duration_s
    if load.model == "open":
        achieved = lr.started / window if window > 0 else 0.0
    else:
        achieved = total.iterations / duration_s if duration_s > 0 else 0.0
    summary: dict[str, Any] = {
        "model": load.model,
        "workers": limits.workers,
        "workers_reason": limits.reason,
        "vus": load.vus if load.model == "closed" else None,
        "max_vus": (load.max_vus or default_max_vus(load)) if load.model == "open" else None,
        "vus_max_active": max_vus,
        "connections_max": max_connections,
        "planned_duration_s": planned,
        "iterations_per_vu" if load.model == "closed" else "iterations": load.iterations,
        "iterations_done": total.iterations,
        "rate": load.rate,
        "achieved_rate": round(achieved, 3),
        "started": lr.started if load.model == "open" else total.iterations,
        "dropped": lr.dropped,
        "lag_ms": _ms(lr.lag) if load.model == "open" else None,
        "iteration_ms": _ms(lr.iteration),
        "graceful_stop_s": load.graceful_stop_s,
        "think_time_s": load.think_time_s,
        "ramp_up_s": load.ramp_up_s,
        "stages": [{"duration_s": s.duration_s, "target": s.target} for s in load.stages],
        "source_addresses": list(limits.source_addresses),
        "nofile": limits.nofile,
        "incomplete_workers": list(incomplete_workers),
        "stop_reason": stop_reason,
    }
    errors = list(problems)
    if incomplete_workers:
        errors.append(
            "incomplete: worker(s) "
            + ", ".join(str(w) for w in incomplete_workers)
            + f" of {limits.workers} ended before the run did; their last interval is lost, "
            "the other workers' results are kept"
        )
    if stop_reason and stop_reason.startswith("aborted"):
        errors.append(stop_reason)
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
        settings={
            "mode": "load",
            "read_timeout_s": scenario.read_timeout_s,
            "load": summary,
        },
    )
    return result.with_thresholds(evaluate(scenario.thresholds, result))


def load_summary_line(result: RunResult) -> str:
    """One console line with the load figures (printed after the usual report)."""
    load = result.settings.get("load")
    if not isinstance(load, dict):
        return ""
    parts = [
        f"load: {load['model']} model",
        f"{load['workers']} worker(s)",
        f"max {load['vus_max_active']:,} VUs",
        f"{load['iterations_done']:,} iterations",
        f"{load['achieved_rate']:g}/s achieved" + (f" of {load['rate']:g}/s" if load.get("rate") else ""),
    ]
    if load["model"] == "open":
        lag = load.get("lag_ms") or {}
        parts.append(
            f"lag p50 {lag.get('p50', 0):g}ms p99 {lag.get('p99', 0):g}ms max {lag.get('max', 0):g}ms"
        )
        parts.append(f"{load['dropped']:,} dropped (max_vus)")
    if load.get("incomplete_workers"):
        parts.append("INCOMPLETE workers " + ", ".join(str(w) for w in load["incomplete_workers"]))
    if load.get("stop_reason"):
        parts.append(load["stop_reason"])
    return ", ".join(parts)
