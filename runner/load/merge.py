"""Shard reports merged exactly into the report one run would give (pure: no I/O, no event loop).

A shard run (``wsload run FILE --shard K/N``, or one Dask worker's share of ``--cluster``) writes
the usual JSON report plus ``settings.shard`` (``runner.results.shard_info.ShardInfo``), which
holds what an exact merge needs and the report alone does not keep:

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

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from runner.errors import UsageError
from runner.load.result import evaluate_load, load_figures
from runner.results.codec import ShardDataError, decode, plan_to_json
from runner.results.load_figures import LoadSummary
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult, TlsInfo, build_result
from runner.results.shard_info import ShardInfo
from runner.scenario.model import Scenario

__all__ = [
    "MergeError",
    "ShardReport",
    "check_compatible",
    "flatten",
    "iso_time",
    "merge_recorders",
    "merge_results",
    "merged",
    "parse_shard",
    "prefixed",
    "scenario_digest",
    "shard_info",
]


class MergeError(UsageError):
    """Reports that cannot be merged (not shard reports, different scenarios, a shard twice)."""


# --- what a shard run writes ----------------------------------------------------------------------


def scenario_digest(scenario: Scenario) -> str:
    """The identity of a scenario for merging: sha256 of its (masked) file text and its name."""
    return hashlib.sha256(f"{scenario.name}\x00{scenario.source}".encode()).hexdigest()


def shard_info(
    scenario: Scenario,
    *,
    index: int,
    count: int,
    start_unix_ns: int,
    recorder: RunRecorder,
    lost: bool = False,
) -> ShardInfo:
    """``settings.shard`` of a shard report (``index`` 1-based); ``scenario`` has its overrides
    applied, so its ``load`` is the plan every shard followed."""
    assert scenario.load is not None
    return ShardInfo(
        index=index,
        count=count,
        scenario_file=scenario.file,
        scenario_name=scenario.name,
        scenario_sha256=scenario_digest(scenario),
        plan=scenario.load,
        thresholds=scenario.thresholds,
        start_unix_ns=start_unix_ns,
        recorder=recorder.serialize(),
        lost=lost,
    )


# --- reading shard reports ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardReport:
    """One shard's report as the merge needs it; ``name`` names it in messages (a file path)."""

    name: str
    result: RunResult
    shard: ShardInfo


def parse_shard(name: str, doc: Mapping[str, Any]) -> ShardReport:
    """A shard report from its JSON document; ``MergeError`` when it is not one."""
    try:
        result = decode(doc)
    except ShardDataError as exc:
        raise MergeError(f"{name}: damaged shard data (field {exc})") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MergeError(f"{name}: not a wsload JSON report (missing or wrong field {exc})") from exc
    if result.settings.shard is None:
        raise MergeError(
            f"{name}: not a shard report (written without --shard K/N); only shard reports merge exactly"
        )
    return ShardReport(name, result, result.settings.shard)


def check_compatible(shards: Sequence[ShardReport]) -> None:
    """Refuse reports that are not shards of one plan of one scenario, or a shard given twice."""
    if not shards:
        raise MergeError("no shard reports to merge")
    first = shards[0].shard
    for report in shards[1:]:
        s, what = report.shard, ""
        if s.scenario_sha256 != first.scenario_sha256:
            what = (
                f"a different scenario ('{report.result.scenario_name}' in {report.result.scenario_file} vs "
                f"'{shards[0].result.scenario_name}' in {shards[0].result.scenario_file})"
            )
        elif s.count != first.count:
            what = f"a different shard count ({s.count} vs {first.count})"
        elif (plan := plan_to_json(s.plan)) != (first_plan := plan_to_json(first.plan)):
            what = f"a different load plan ({plan} vs {first_plan})"
        elif [t.expression for t in s.thresholds] != [t.expression for t in first.thresholds]:
            what = "different thresholds"
        if what:
            raise MergeError(f"cannot merge {report.name} with {shards[0].name}: {what}")
    seen: dict[int, str] = {}
    for report in shards:
        s = report.shard
        if not 1 <= s.index <= s.count:
            raise MergeError(f"{report.name}: shard {s.index} is not between 1 and {s.count}")
        if s.index in seen:
            raise MergeError(f"shard {s.index}/{s.count} given twice: {seen[s.index]} and {report.name}")
        seen[s.index] = report.name


# --- the merge ------------------------------------------------------------------------------------


def merge_recorders(parts: Sequence[tuple[Mapping[str, Any], int]]) -> RunRecorder:
    """Serialised recorders added into one; each with a whole-second ``offset`` for its time series
    (its start's distance from the earliest start), and its gauges summed per second (a plan's
    populations each the same way)."""
    total = RunRecorder(0)
    gauges: dict[int, list[int]] = {}
    populations: dict[str, list[tuple[Mapping[str, Any], int]]] = {}
    for data, offset in parts:
        for name, population in (data.get("populations") or {}).items():
            populations.setdefault(name, []).append((population, offset))
        data = {k: v for k, v in data.items() if k != "populations"}
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
    for name, shares in populations.items():
        total.populations[name] = merge_recorders(shares)
    return total


def prefixed(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A population's serialised recorder with its steps (and their failure groups) named
    ``NAME/STEP``, and without health (the process's, counted once by the caller)."""
    out = dict(data)
    out["steps"] = [{**step, "name": f"{name}/{step['name']}"} for step in data["steps"]]
    out["failures"] = [[f"{name}/{f[0]}", *f[1:]] for f in data["failures"]]
    out["health"] = {}
    out.pop("populations", None)
    return out


def flatten(root: RunRecorder) -> RunRecorder:
    """The run as a whole: every population added up, steps named ``POPULATION/STEP``, gauges
    summed per second, the process health once."""
    own = root.serialize()
    own.pop("populations", None)
    # The root's gauges are the populations' summed again: the populations' own are added up.
    own["timeseries"] = [
        {k: v for k, v in e.items() if k not in ("vus", "connections", "paused")} for e in own["timeseries"]
    ]
    parts = [(own, 0), *((prefixed(n, r.serialize()), 0) for n, r in root.populations.items())]
    whole = merge_recorders(parts)
    whole.start_ns = root.start_ns
    whole.mask = root.mask
    return whole


def _merged_tls(results: Sequence[RunResult]) -> TlsInfo:
    return TlsInfo(
        verified=all(r.tls.verified for r in results),
        ignored_errors=tuple(sorted({e for r in results for e in r.tls.ignored_errors})),
        allowed=tuple(sorted({e for r in results for e in r.tls.allowed})),
    )


def iso_time(unix_ns: int) -> str:
    moment = dt.datetime.fromtimestamp(unix_ns / 1e9, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _load_summary(
    shards: Sequence[ShardReport], total: RunRecorder, duration_s: float, missing: Sequence[int]
) -> LoadSummary:
    """``settings.load`` of the merged run: the figures from the plan and the merged recorder
    (as a local run computes them), and what only the shards know (workers, incomplete ones)."""
    plan = shards[0].shard.plan
    loads = [s.result.settings.load or LoadSummary(plan.model) for s in shards]
    seconds = total.timeseries.samples()
    vus_series = [s.vus for s in seconds if s.vus is not None]
    conns_series = [s.connections for s in seconds if s.connections is not None]
    incomplete: list[int | str] = []
    for s, load in zip(shards, loads, strict=True):
        incomplete += [f"shard {s.shard.index} worker {w}" for w in load.incomplete_workers]
        if s.shard.lost:
            incomplete.append(f"shard {s.shard.index} (lost)")
    incomplete += [f"shard {k} (missing)" for k in missing]
    reasons = [load.stop_reason for load in loads]
    return replace(
        load_figures(plan, total, duration_s=duration_s),
        workers=sum(load.workers or 1 for load in loads),
        workers_reason=f"{len(shards)} of {shards[0].shard.count} shard(s) merged",
        vus_max_active=max(vus_series) if vus_series else sum(x.vus_max_active or 0 for x in loads),
        connections_max=max(conns_series) if conns_series else sum(x.connections_max or 0 for x in loads),
        source_addresses=tuple(sorted({a for x in loads for a in x.source_addresses})),
        incomplete_workers=tuple(incomplete),
        stop_reason=next((r for r in reasons if r), ""),
        shards=shards[0].shard.count,
        shards_merged=tuple(sorted(s.shard.index for s in shards)),
        shards_missing=tuple(missing),
    )


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
    reports that are not shards of one plan of one scenario. Shards of a plan of populations
    merge population by population (``runner.load.populations.merge_plan``).
    """
    if shards and shards[0].result.populations:
        from runner.load.populations import merge_plan  # it builds on this module

        return merge_plan(shards)
    return merged(shards)[0]


def merged(shards: Sequence[ShardReport]) -> tuple[RunResult, RunRecorder]:
    """``merge_results`` of one scenario's shards, and the merged recorder it was judged on."""
    check_compatible(shards)
    shards = sorted(shards, key=lambda s: s.shard.index)
    first = shards[0]
    count = first.shard.count
    t0 = min(s.shard.start_unix_ns for s in shards)
    parts = [(s.shard.recorder, round((s.shard.start_unix_ns - t0) / 1e9)) for s in shards]
    total = merge_recorders(parts)
    end = max(s.shard.start_unix_ns + int(s.result.duration_s * 1e9) for s in shards)
    duration_s = (end - t0) / 1e9
    given = {s.shard.index for s in shards}
    missing = [k for k in range(1, count + 1) if k not in given]
    errors = [f"shard {s.shard.index}: {e}" for s in shards if (e := _own_error(s.result))]
    if missing:
        errors.append(
            f"incomplete: shard(s) {', '.join(map(str, missing))} of {count} missing; "
            "the totals are those of the shards given"
        )
    lost = [s.shard.index for s in shards if s.shard.lost]
    if lost:
        errors.append(
            f"incomplete: shard(s) {', '.join(map(str, lost))} lost mid-run (their worker went away); "
            "what they sent before is kept"
        )
    targets = sorted({s.result.target for s in shards})
    settings = replace(
        first.result.settings,
        load=_load_summary(shards, total, duration_s, missing),
        shard=None,
        merged_from=tuple(s.name for s in shards),
    )
    plan = first.shard.plan
    result = build_result(
        total,
        scenario_name=first.result.scenario_name,
        scenario_file=first.result.scenario_file,
        started_at=iso_time(t0),
        duration_s=duration_s,
        target=targets[0] if len(targets) == 1 else ", ".join(targets),
        interrupted=any(s.result.interrupted for s in shards),
        error="; ".join(errors),
        tls=_merged_tls([s.result for s in shards]),
        settings=settings,
        hold=plan.hold,
    )
    return evaluate_load(result, first.shard.thresholds, plan), total
