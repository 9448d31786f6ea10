"""Shard reports merged exactly into the report one run would give (pure: no I/O, no event loop).

A shard run (``wsload run FILE --shard K/N``, or one Dask worker's share of ``--cluster``) writes
the usual JSON report plus ``settings["shard"]``, which holds what an exact merge needs and the
report alone does not keep:

- ``recorder``: the shard's whole ``RunRecorder.serialize()`` (per-step counts, rc counts, error
  and failure groups, latency and connect HDR histograms, the per-second time series *with* its
  histograms, the load recorder's lag and iteration histograms). The report's own ``timeseries``
  keeps only per-second percentiles, which cannot be merged; the recorder's can.
- ``start_unix_ns``: the wall-clock instant its plan started. Each shard's seconds count from it;
  merged seconds count from the earliest start, so series line up on wall-clock seconds.
- ``thresholds``: the scenario's thresholds as parsed (expression, subject, stat, op, value,
  line). The merge re-evaluates them on the merged result without re-loading the scenario file,
  so the machine that merges needs neither the file nor its ``${ENV}`` secrets.
- ``scenario_sha256`` (of the masked file text) and ``plan`` (the load shape after overrides):
  reports of different scenarios or plans are refused rather than added up.

Counts add; HDR histograms add bucket by bucket (``decode_and_add``), so percentiles of the
merge are the percentiles of all samples; exact min/max/sum merge as min/max/sum. Per-second
gauges (active users, connections) are summed across shards, not maxed (each shard is a
disjoint part of the users).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import UsageError
from runner.load.result import evaluate_load, load_figures
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult, TlsInfo, build_result
from runner.scenario.model import LoadSpec, Location, Scenario, Stage, Threshold

__all__ = [
    "MergeError",
    "ShardReport",
    "merge_recorders",
    "merge_results",
    "parse_shard",
    "plan_of",
    "scenario_digest",
    "shard_settings",
    "thresholds_from_json",
    "thresholds_to_json",
]

#: Where a shard report keeps its shard data.
SHARD_KEY = "shard"


class MergeError(UsageError):
    """Reports that cannot be merged (not shard reports, different scenarios, a shard twice)."""


# --- what a shard run writes ----------------------------------------------------------------------


def scenario_digest(scenario: Scenario) -> str:
    """The identity of a scenario for merging: sha256 of its (masked) file text and its name."""
    return hashlib.sha256(f"{scenario.name}\x00{scenario.source}".encode()).hexdigest()


def plan_of(load: LoadSpec) -> dict[str, Any]:
    """The load plan (after command-line overrides) as JSON: equal plans merge, others do not."""
    return {
        "model": load.model,
        "vus": load.vus,
        "duration_s": load.duration_s,
        "iterations": load.iterations,
        "ramp_up_s": load.ramp_up_s,
        "stages": [[s.duration_s, s.target] for s in load.stages],
        "rate": load.rate,
        "max_vus": load.max_vus,
        "think_time_s": load.think_time_s,
        "pace_s": load.pace_s,
        "graceful_stop_s": load.graceful_stop_s,
        "hold": load.hold,
        "failure_pause": [load.failure_pause_first_s, load.failure_pause_max_s],
    }


def plan_from_json(plan: Mapping[str, Any]) -> LoadSpec:
    """The load plan ``plan_of`` wrote (what the merge needs of it: schedule, hold, pauses)."""
    first, most = plan.get("failure_pause") or (0.05, 1.0)
    return LoadSpec(
        model=plan.get("model", "closed"),
        vus=int(plan.get("vus") or 1),
        duration_s=plan.get("duration_s"),
        iterations=plan.get("iterations"),
        ramp_up_s=float(plan.get("ramp_up_s") or 0.0),
        stages=tuple(Stage(float(d), float(t)) for d, t in plan.get("stages") or ()),
        rate=plan.get("rate"),
        max_vus=plan.get("max_vus"),
        think_time_s=float(plan.get("think_time_s") or 0.0),
        pace_s=plan.get("pace_s"),
        graceful_stop_s=float(plan.get("graceful_stop_s", 5.0)),
        hold=bool(plan.get("hold", False)),
        failure_pause_first_s=float(first),
        failure_pause_max_s=float(most),
    )


def thresholds_to_json(thresholds: Sequence[Threshold]) -> list[dict[str, Any]]:
    return [
        {
            "expression": t.expression,
            "subject": t.subject,
            "stat": t.stat,
            "op": t.op,
            "value": t.value,
            "file": t.location.file,
            "line": t.location.line,
            "column": t.location.column,
            "abort_on_fail": t.abort_on_fail,
            "accept_no_data": t.accept_no_data,
        }
        for t in thresholds
    ]


def thresholds_from_json(data: Sequence[Mapping[str, Any]]) -> tuple[Threshold, ...]:
    return tuple(
        Threshold(
            expression=d["expression"],
            subject=d["subject"],
            stat=d["stat"],
            op=d["op"],
            value=float(d["value"]),
            location=Location(d.get("file", ""), int(d.get("line", 0)), int(d.get("column", 0))),
            abort_on_fail=bool(d.get("abort_on_fail", False)),
            accept_no_data=bool(d.get("accept_no_data", False)),
        )
        for d in data
    )


def shard_settings(
    scenario: Scenario,
    *,
    index: int,
    count: int,
    start_unix_ns: int,
    recorder: RunRecorder,
    lost: bool = False,
) -> dict[str, Any]:
    """``settings["shard"]`` of a shard report (``index`` 1-based); ``scenario`` has its
    overrides applied, so its ``load`` is the plan every shard followed."""
    assert scenario.load is not None
    return {
        "index": index,
        "count": count,
        "scenario_file": scenario.file,
        "scenario_name": scenario.name,
        "scenario_sha256": scenario_digest(scenario),
        "plan": plan_of(scenario.load),
        "thresholds": thresholds_to_json(scenario.thresholds),
        "start_unix_ns": start_unix_ns,
        "lost": lost,
        "recorder": recorder.serialize(),
    }


# --- reading shard reports ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardReport:
    """One shard's report as the merge needs it; ``name`` names it in messages (a file path)."""

    name: str
    result: RunResult
    index: int
    count: int
    digest: str
    plan: Mapping[str, Any]
    thresholds: tuple[Threshold, ...]
    start_unix_ns: int
    recorder: Mapping[str, Any]
    lost: bool = False


def parse_shard(name: str, doc: Mapping[str, Any]) -> ShardReport:
    """A shard report from its JSON document; ``MergeError`` when it is not one."""
    try:
        result = RunResult.from_json(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MergeError(f"{name}: not a wsload JSON report (missing or wrong field {exc})") from exc
    shard = result.settings.get(SHARD_KEY)
    if not isinstance(shard, Mapping):
        raise MergeError(
            f"{name}: not a shard report (written without --shard K/N); only shard reports merge exactly"
        )
    try:
        return ShardReport(
            name=name,
            result=result,
            index=int(shard["index"]),
            count=int(shard["count"]),
            digest=str(shard["scenario_sha256"]),
            plan=dict(shard["plan"]),
            thresholds=thresholds_from_json(shard["thresholds"]),
            start_unix_ns=int(shard["start_unix_ns"]),
            recorder=shard["recorder"],
            lost=bool(shard.get("lost", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MergeError(f"{name}: damaged shard data (field {exc})") from exc


def _check_compatible(shards: Sequence[ShardReport]) -> None:
    """Refuse reports that are not shards of one plan of one scenario, or a shard given twice."""
    if not shards:
        raise MergeError("no shard reports to merge")
    first = shards[0]
    for s in shards[1:]:
        what = ""
        if s.digest != first.digest:
            what = (
                f"a different scenario ('{s.result.scenario_name}' in {s.result.scenario_file} vs "
                f"'{first.result.scenario_name}' in {first.result.scenario_file})"
            )
        elif s.count != first.count:
            what = f"a different shard count ({s.count} vs {first.count})"
        elif dict(s.plan) != dict(first.plan):
            what = f"a different load plan ({dict(s.plan)} vs {dict(first.plan)})"
        elif [t.expression for t in s.thresholds] != [t.expression for t in first.thresholds]:
            what = "different thresholds"
        if what:
            raise MergeError(f"cannot merge {s.name} with {first.name}: {what}")
    seen: dict[int, str] = {}
    for s in shards:
        if not 1 <= s.index <= s.count:
            raise MergeError(f"{s.name}: shard {s.index} is not between 1 and {s.count}")
        if s.index in seen:
            raise MergeError(f"shard {s.index}/{s.count} given twice: {seen[s.index]} and {s.name}")
        seen[s.index] = s.name


# --- the merge ------------------------------------------------------------------------------------


def merge_recorders(parts: Sequence[tuple[Mapping[str, Any], int]]) -> RunRecorder:
    """Serialised recorders added into one; each with a whole-second ``offset`` for its time series
    (its start's distance from the earliest start), and its gauges summed per second."""
    total = RunRecorder(0)
    gauges: dict[int, list[int]] = {}
    for data, offset in parts:
        series = []
        for entry in data.get("timeseries", []):
            entry = dict(entry)
            entry["t"] = int(entry["t"]) + offset
            if "vus" in entry:
                g = gauges.setdefault(entry["t"], [0, 0, 0])
                g[0] += int(entry.pop("vus") or 0)
                g[1] += int(entry.pop("connections", 0) or 0)
                g[2] += int(entry.pop("paused", 0) or 0)
            series.append(entry)
        total.merge({**data, "timeseries": series, "health": {}})
        total.health.merge(data.get("health") or {}, offset=offset)
    for second, (vus, conns, paused) in gauges.items():
        total.timeseries.gauges(second, vus, conns, paused)
    return total


def _merged_tls(results: Sequence[RunResult]) -> TlsInfo:
    return TlsInfo(
        verified=all(r.tls.verified for r in results),
        ignored_errors=tuple(sorted({e for r in results for e in r.tls.ignored_errors})),
        allowed=tuple(sorted({e for r in results for e in r.tls.allowed})),
    )


def _iso(unix_ns: int) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(unix_ns / 1e9, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _load_summary(
    shards: Sequence[ShardReport], total: RunRecorder, duration_s: float, missing: Sequence[int]
) -> dict[str, Any]:
    """``settings["load"]`` of the merged run: the figures from the plan and the merged recorder
    (as a local run computes them), and what only the shards know (workers, incomplete ones)."""
    loads = [s.result.settings.get("load") or {} for s in shards]
    summary = load_figures(plan_from_json(shards[0].plan), total, duration_s=duration_s)
    vus_series = [e[TS_VUS] for e in total.timeseries.seconds.values() if e[TS_VUS] is not None]
    conns_series = [e[TS_CONNS] for e in total.timeseries.seconds.values() if e[TS_CONNS] is not None]
    incomplete: list[Any] = []
    for s, load in zip(shards, loads, strict=True):
        incomplete += [f"shard {s.index} worker {w}" for w in load.get("incomplete_workers", [])]
        if s.lost:
            incomplete.append(f"shard {s.index} (lost)")
    incomplete += [f"shard {k} (missing)" for k in missing]
    reasons = [str(load.get("stop_reason") or "") for load in loads]
    summary.update(
        {
            "workers": sum(int(load.get("workers") or 1) for load in loads),
            "workers_reason": f"{len(shards)} of {shards[0].count} shard(s) merged",
            "vus_max_active": max(vus_series) if vus_series else _sum(loads, "vus_max_active"),
            "connections_max": max(conns_series) if conns_series else _sum(loads, "connections_max"),
            "source_addresses": sorted({a for x in loads for a in x.get("source_addresses", [])}),
            "incomplete_workers": incomplete,
            "stop_reason": next((r for r in reasons if r), ""),
            "shards": shards[0].count,
            "shards_merged": sorted(s.index for s in shards),
            "shards_missing": list(missing),
        }
    )
    return summary


def _sum(loads: Sequence[Mapping[str, Any]], key: str) -> int:
    return sum(int(x.get(key) or 0) for x in loads)


# TimeSeries bucket slots of the two gauges (see runner.metrics.TimeSeries)
TS_VUS, TS_CONNS = 7, 8


def _own_error(result: RunResult) -> str:
    """A shard's error without its measurement problems: the merge finds those again on the
    merged figures (a shard that made its share of the plan late may still make a whole plan)."""
    error = result.error
    for problem in result.problems:
        error = error.replace(problem, "")
    return "; ".join(x.strip() for x in error.split("; ") if x.strip())


def merge_results(shards: Sequence[ShardReport]) -> RunResult:
    """The run the shards are parts of, as one ``RunResult``, thresholds re-evaluated on it.

    Missing shards (fewer than N given) or lost ones make the result incomplete: it says which,
    and an incomplete run does not pass (its totals are not the plan's). ``MergeError`` for
    reports that are not shards of one plan of one scenario.
    """
    _check_compatible(shards)
    shards = sorted(shards, key=lambda s: s.index)
    first = shards[0]
    t0 = min(s.start_unix_ns for s in shards)
    parts = [(s.recorder, round((s.start_unix_ns - t0) / 1e9)) for s in shards]
    total = merge_recorders(parts)
    end = max(s.start_unix_ns + int(s.result.duration_s * 1e9) for s in shards)
    duration_s = (end - t0) / 1e9
    given = {s.index for s in shards}
    missing = [k for k in range(1, first.count + 1) if k not in given]
    errors = [f"shard {s.index}: {e}" for s in shards if (e := _own_error(s.result))]
    if missing:
        errors.append(
            f"incomplete: shard(s) {', '.join(map(str, missing))} of {first.count} missing; "
            "the totals are those of the shards given"
        )
    lost = [s.index for s in shards if s.lost]
    if lost:
        errors.append(
            f"incomplete: shard(s) {', '.join(map(str, lost))} lost mid-run (their worker went away); "
            "what they sent before is kept"
        )
    targets = sorted({s.result.target for s in shards})
    settings = {
        **{k: v for k, v in first.result.settings.items() if k not in (SHARD_KEY, "load")},
        "load": _load_summary(shards, total, duration_s, missing),
        "merged_from": [s.name for s in shards],
    }
    plan = plan_from_json(first.plan)
    result = build_result(
        total,
        scenario_name=first.result.scenario_name,
        scenario_file=first.result.scenario_file,
        started_at=_iso(t0),
        duration_s=duration_s,
        target=targets[0] if len(targets) == 1 else ", ".join(targets),
        interrupted=any(s.result.interrupted for s in shards),
        error="; ".join(errors),
        tls=_merged_tls([s.result for s in shards]),
        settings=settings,
        hold=plan.hold,
    )
    return evaluate_load(result, first.thresholds, plan)
