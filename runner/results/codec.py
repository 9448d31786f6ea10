"""The JSON report's document from a ``RunResult`` and back: the one place that knows its keys.

``encode(result)`` is the document ``runner/schemas/report.schema.json`` describes (the JSON
report masks and writes it; a shard sends it through Dask); ``decode(doc)`` reads one back,
for ``wsload report`` (HTML of saved runs), ``wsload merge`` (shard reports) and tests.
``encode(decode(doc))`` gives ``doc`` again for every report wsload writes, byte for byte once
dumped: keys keep their order, figures their type, optional keys stay absent.

Records whose report keys are their field names, in order, are written by ``_flat``: one
declaration is both the record and its part of the document. The others are written here field
by field, for their nested parts, keys that differ from the field (a closed model's
``iterations_per_vu``) or keys written only sometimes.

Reading is lenient where earlier reports lacked a figure (a default stands for it) and strict
where a report could not be used without it: ``KeyError``, ``TypeError`` or ``ValueError``
name the field, which callers turn into "not a wsload JSON report"; a damaged ``settings.shard``
raises ``ShardDataError``, so ``wsload merge`` can say which part is damaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from runner import __version__
from runner.errors import BadValue
from runner.results.load_figures import (
    GeneratorFigures,
    LoadSummary,
    PlanFigures,
    SaturationBounds,
    WorkerFigures,
)
from runner.results.result import (
    LATENCY_FIELDS,
    ErrorGroup,
    FailureRecord,
    IterationCounts,
    LatencySummary,
    Reach,
    RunResult,
    RunSettings,
    SecondSample,
    StepResult,
    ThresholdResult,
    TlsInfo,
)
from runner.results.shard_info import ShardInfo
from runner.scenario.model import LoadSpec, Location, Stage, Threshold

__all__ = [
    "ShardDataError",
    "decode",
    "decode_step",
    "encode",
    "encode_settings",
    "plan_from_json",
    "plan_to_json",
    "thresholds_from_json",
    "thresholds_to_json",
]

R = TypeVar("R")


class ShardDataError(BadValue):
    """The shard part of a report (``settings.shard``) is damaged; ``field`` says where."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(field)

    def __str__(self) -> str:
        return self.field


# --- records written by their fields --------------------------------------------------------------


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _flat(record: Any) -> dict[str, Any]:
    """A record whose report keys are its field names, in order."""
    return {name: getattr(record, name) for name in _names(type(record))}


def _from_flat(cls: type[R], data: Mapping[str, Any]) -> R:
    """The record from its keys; a missing one takes the field's default (``TypeError`` if it
    has none)."""
    return cls(**{name: data[name] for name in _names(cls) if name in data})


# --- the run --------------------------------------------------------------------------------------


def encode(result: RunResult) -> dict[str, Any]:
    """The JSON report's document of ``result`` (not masked: ``runner.reports.json_report`` masks)."""
    return {
        "passed": result.passed,
        "interrupted": result.interrupted,
        "exit_code": result.exit_code,
        "scenario": {"name": result.scenario_name, "file": result.scenario_file},
        "started_at": result.started_at,
        "duration_s": round(result.duration_s, 3),
        "target": result.target,
        "tls": {
            "verified": result.tls.verified,
            "ignored_errors": list(result.tls.ignored_errors),
            "allowed": list(result.tls.allowed),
        },
        "iterations": _encode_iterations(result.iterations),
        "error": result.error,
        "problems": list(result.problems),
        "steps": [_encode_step(s) for s in result.steps],
        "connect_ms": {k: v.percentiles() for k, v in result.connect_ms.items()},
        "thresholds": [_flat(t) for t in result.thresholds],
        "failures": [_flat(f) for f in result.failures],
        "failures_dropped": result.failures_dropped,
        "timeseries": [_encode_second(s) for s in result.timeseries],
        "settings": encode_settings(result.settings),
        "wsload_version": result.wsload_version,
        **({"populations": [encode(p) for p in result.populations]} if result.populations else {}),
    }


def decode(doc: Mapping[str, Any]) -> RunResult:
    """The result a JSON report holds (see the module docstring for what is lenient)."""
    return RunResult(
        passed=doc["passed"],
        interrupted=doc.get("interrupted", False),
        exit_code=doc.get("exit_code", 0 if doc["passed"] else 1),
        scenario_name=doc["scenario"]["name"],
        scenario_file=doc["scenario"]["file"],
        started_at=doc["started_at"],
        duration_s=doc["duration_s"],
        target=doc.get("target", ""),
        steps=tuple(decode_step(s) for s in doc["steps"]),
        iterations=_decode_iterations(doc),
        thresholds=tuple(_decode_threshold(t) for t in doc.get("thresholds", [])),
        failures=tuple(_from_flat(FailureRecord, f) for f in doc.get("failures", [])),
        failures_dropped=doc.get("failures_dropped", 0),
        tls=_decode_tls(doc.get("tls")),
        error=doc.get("error", ""),
        timeseries=tuple(_decode_second(s) for s in doc.get("timeseries", [])),
        connect_ms={
            k: s for k, v in doc.get("connect_ms", {}).items() if (s := _decode_latency(v)) is not None
        },
        settings=_decode_settings(doc.get("settings") or {}),
        problems=tuple(doc.get("problems", ())),
        wsload_version=doc.get("wsload_version", __version__),
        populations=tuple(decode(p) for p in doc.get("populations", ())),
    )


def _encode_iterations(it: IterationCounts) -> dict[str, int]:
    return {
        "started": it.started,
        "ended": it.ended,
        "completed": it.completed,
        "failed": it.failed,
        "interrupted": it.interrupted,
    }


def _decode_iterations(doc: Mapping[str, Any]) -> IterationCounts:
    it = doc.get("iterations", 0)
    if isinstance(it, Mapping):
        return IterationCounts(
            int(it["started"]), int(it["completed"]), int(it["failed"]), int(it["interrupted"])
        )
    # A report written before iterations were split: its count included cut ones.
    failed = int(doc.get("iterations_failed", 0))
    return IterationCounts(int(it), max(int(it) - failed, 0), failed, 0)


def _decode_threshold(t: Mapping[str, Any]) -> ThresholdResult:
    return ThresholdResult(
        t["expression"],
        t["value"],
        t["passed"],
        t.get("line", 0),
        t.get("limit", 0.0),
        t.get("message", ""),
        t.get("default", False),
        t.get("file", ""),
    )


def _decode_tls(d: Mapping[str, Any] | None) -> TlsInfo:
    if d is None:
        return TlsInfo()
    return TlsInfo(d["verified"], tuple(d["ignored_errors"]), tuple(d.get("allowed", [])))


def _decode_latency(data: Mapping[str, Any] | None) -> LatencySummary | None:
    if data is None:
        return None
    return LatencySummary(**{k: float(data[k]) for k in LATENCY_FIELDS if k in data})


def _percentiles(summary: LatencySummary | None) -> dict[str, float] | None:
    return summary.percentiles() if summary else None


# --- steps ----------------------------------------------------------------------------------------


def _encode_step(s: StepResult) -> dict[str, Any]:
    return {
        "name": s.name,
        "kind": s.kind,
        "connection": s.connection,
        "line": s.line,
        "count": s.count,
        "ok": s.ok,
        "failures": s.failures,
        "skipped": s.skipped,
        "skipped_messages": s.skipped_messages,
        "rc": dict(s.rc),
        "latency_ms": _percentiles(s.latency_ms),
        "errors": [_flat(e) for e in s.errors],
        "connect_ms": {k: v.percentiles() for k, v in s.connect_ms.items()} if s.connect_ms else None,
        "histogram": s.histogram,
        "pending": s.pending,
        "pending_max_ms": s.pending_max_ms,
        "pending_mean_ms": s.pending_mean_ms,
        "internal_errors": s.internal_errors,
        "closes": dict(s.closes),
        "response_ms": _percentiles(s.response_ms),
        "response_histogram": s.response_histogram,
        **(
            {
                "delivery_ms": _percentiles(s.delivery_ms),
                "delivery_histogram": s.delivery_histogram,
                "delivery_ahead": s.delivery_ahead,
            }
            if s.delivery_ms is not None
            else {}
        ),
        **({"reach": _encode_reach(s.reach)} if s.reach is not None else {}),
        **(
            {"received": s.received, "received_gap_max_ms": s.received_gap_max_ms}
            if s.kind == "receive"
            else {}
        ),
    }


def _encode_reach(r: Reach) -> dict[str, Any]:
    return {
        "messages": r.messages,
        "receivers_min": r.receivers_min,
        "receivers_median": r.receivers_median,
        "receivers_max": r.receivers_max,
        "time_ms": _percentiles(r.time_ms),
        "overflow": r.overflow,
    }


def _decode_reach(d: Mapping[str, Any] | None) -> Reach | None:
    if not d:
        return None
    return Reach(
        messages=d["messages"],
        receivers_min=d["receivers_min"],
        receivers_median=d["receivers_median"],
        receivers_max=d["receivers_max"],
        time_ms=_decode_latency(d.get("time_ms")),
        overflow=d.get("overflow", 0),
    )


def decode_step(d: Mapping[str, Any]) -> StepResult:
    """One step of a report (``steps[]``)."""
    connect = d.get("connect_ms")
    return StepResult(
        name=d["name"],
        kind=d["kind"],
        connection=d.get("connection", ""),
        line=d.get("line", 0),
        count=d["count"],
        ok=d["ok"],
        failures=d["failures"],
        skipped=d.get("skipped", 0),
        skipped_messages=d.get("skipped_messages", 0),
        rc=dict(d.get("rc", {})),
        latency_ms=_decode_latency(d.get("latency_ms")),
        errors=tuple(_from_flat(ErrorGroup, e) for e in d.get("errors", [])),
        connect_ms=(
            {k: s for k, v in connect.items() if (s := _decode_latency(v)) is not None} if connect else None
        ),
        histogram=d.get("histogram", ""),
        pending=d.get("pending", 0),
        pending_max_ms=d.get("pending_max_ms", 0.0),
        pending_mean_ms=d.get("pending_mean_ms", 0.0),
        internal_errors=d.get("internal_errors", 0),
        closes=dict(d.get("closes", {})),
        response_ms=_decode_latency(d.get("response_ms")),
        response_histogram=d.get("response_histogram", ""),
        delivery_ms=_decode_latency(d.get("delivery_ms")),
        delivery_histogram=d.get("delivery_histogram", ""),
        delivery_ahead=d.get("delivery_ahead", 0),
        reach=_decode_reach(d.get("reach")),
        received=d.get("received", 0),
        received_gap_max_ms=d.get("received_gap_max_ms", 0.0),
    )


# --- the per-second samples -----------------------------------------------------------------------


def _encode_second(s: SecondSample) -> dict[str, Any]:
    """Keys in the order the report has always had them; figures not measured are left out. The
    return codes and latency are the sample's own maps (the document is only dumped or masked,
    which copies): an hour-long run has 3,600 of these, written on every report."""
    out: dict[str, Any] = {"t": s.t, "starts": s.starts}
    if s.iterations is not None:
        out["iterations"] = s.iterations
    out["steps"] = s.steps
    if s.messages is not None:
        out["messages"] = s.messages
    out["failures"] = s.failures
    out["rc"] = s.rc
    if s.vus is not None:
        out["vus"] = s.vus
    if s.connections is not None:
        out["connections"] = s.connections
    if s.paused is not None:
        out["paused"] = s.paused
    if s.dropped is not None:
        out["dropped"] = s.dropped
    out["latency_ms"] = s.latency_ms
    if s.cpu is not None:
        out["cpu"] = s.cpu
    if s.loop_lag_ms is not None:
        out["loop_lag_ms"] = s.loop_lag_ms
    if s.send_blocked is not None:
        out["send_blocked"] = s.send_blocked
    if s.saturated is not None:
        out["saturated"] = s.saturated
    if s.partial is not None:
        out["partial"] = s.partial
    return out


def _decode_second(d: Mapping[str, Any]) -> SecondSample:
    latency = d.get("latency_ms")
    return SecondSample(
        t=int(d.get("t", 0)),
        starts=d.get("starts", 0),
        steps=d.get("steps", 0),
        failures=d.get("failures", 0),
        rc=dict(d.get("rc") or {}),
        iterations=d.get("iterations"),
        messages=d.get("messages"),
        vus=d.get("vus"),
        connections=d.get("connections"),
        paused=d.get("paused"),
        dropped=d.get("dropped"),
        latency_ms=dict(latency) if latency is not None else None,
        cpu=d.get("cpu"),
        loop_lag_ms=d.get("loop_lag_ms"),
        send_blocked=d.get("send_blocked"),
        saturated=d.get("saturated"),
        partial=d.get("partial"),
    )


# --- settings -------------------------------------------------------------------------------------


def encode_settings(settings: RunSettings) -> dict[str, Any]:
    """``settings`` of the report (the HTML report lists them, one row per figure)."""
    out: dict[str, Any] = {}
    if settings.mode == "check":  # a check's settings have always been written in this order
        out["read_timeout_s"] = settings.read_timeout_s
        out["run_timeout_s"] = settings.run_timeout_s
        out["mode"] = settings.mode
    else:
        if settings.mode is not None:
            out["mode"] = settings.mode
        if settings.read_timeout_s is not None:
            out["read_timeout_s"] = settings.read_timeout_s
        if settings.run_timeout_s is not None:
            out["run_timeout_s"] = settings.run_timeout_s
    if settings.load is not None:
        out["load"] = _encode_load(settings.load)
    if settings.shard is not None:
        out["shard"] = _encode_shard(settings.shard)
    if settings.merged_from is not None:
        out["merged_from"] = list(settings.merged_from)
    if settings.seed is not None:
        out["seed"] = settings.seed
    return out


def _decode_settings(d: Mapping[str, Any]) -> RunSettings:
    load, shard, merged_from = d.get("load"), d.get("shard"), d.get("merged_from")
    return RunSettings(
        mode=d.get("mode"),
        read_timeout_s=d.get("read_timeout_s"),
        run_timeout_s=d.get("run_timeout_s"),
        load=_decode_load(load) if load is not None else None,
        shard=_decode_shard(shard) if shard is not None else None,
        merged_from=tuple(merged_from) if merged_from is not None else None,
        seed=d.get("seed"),
    )


# --- the load figures -----------------------------------------------------------------------------


def _iterations_key(model: str) -> str:
    return "iterations_per_vu" if model == "closed" else "iterations"


def _latency_map(m: Mapping[str, float] | None) -> dict[str, float] | None:
    return dict(m) if m is not None else None


def _encode_load(load: LoadSummary) -> dict[str, Any]:
    """``settings.load``: a merge of shards has its ``shards*`` keys and no ``nofile``."""
    out: dict[str, Any] = {
        "model": load.model,
        "vus": load.vus,
        "max_vus": load.max_vus,
        "planned_duration_s": load.planned_duration_s,
        _iterations_key(load.model): load.iterations,
        "iterations_done": load.iterations_done,
        "rate": load.rate,
        "achieved_rate": load.achieved_rate,
        "started": load.started,
        "dropped": load.dropped,
        "lag_ms": _latency_map(load.lag_ms),
        "iteration_ms": _latency_map(load.iteration_ms),
        "failure_pauses": load.failure_pauses,
        "failure_pause_s": load.failure_pause_s,
        "failure_pause": {"first_s": load.failure_pause_first_s, "max_s": load.failure_pause_max_s},
        "graceful_stop_s": load.graceful_stop_s,
        "think_time_s": load.think_time_s,
        "pace_s": load.pace_s,
        "ramp_up_s": load.ramp_up_s,
        "hold": load.hold,
        "stages": [{"duration_s": s.duration_s, "target": s.target} for s in load.stages],
    }
    if load.plan is not None:
        out["plan"] = _flat(load.plan)
    if load.generator is not None:
        out["generator"] = _encode_generator(load.generator)
    out["workers"] = load.workers
    out["workers_reason"] = load.workers_reason
    out["vus_max_active"] = load.vus_max_active
    out["connections_max"] = load.connections_max
    out["source_addresses"] = list(load.source_addresses)
    if load.shards is None:
        out["nofile"] = load.nofile
    out["incomplete_workers"] = list(load.incomplete_workers)
    out["stop_reason"] = load.stop_reason
    if load.shards is not None:
        out["shards"] = load.shards
        out["shards_merged"] = list(load.shards_merged)
        out["shards_missing"] = list(load.shards_missing)
    return out


def _decode_load(d: Mapping[str, Any]) -> LoadSummary:
    model = d.get("model", "")
    pause = d.get("failure_pause") or {}
    plan, generator = d.get("plan"), d.get("generator")
    return LoadSummary(
        model=model,
        vus=d.get("vus"),
        max_vus=d.get("max_vus"),
        planned_duration_s=d.get("planned_duration_s"),
        iterations=d.get(_iterations_key(model)),
        iterations_done=d.get("iterations_done", 0),
        rate=d.get("rate"),
        achieved_rate=d.get("achieved_rate", 0.0),
        started=d.get("started", 0),
        dropped=d.get("dropped", 0),
        lag_ms=_latency_map(d.get("lag_ms")),
        iteration_ms=_latency_map(d.get("iteration_ms")),
        failure_pauses=d.get("failure_pauses", 0),
        failure_pause_s=d.get("failure_pause_s", 0.0),
        failure_pause_first_s=pause.get("first_s", 0.05),
        failure_pause_max_s=pause.get("max_s", 1.0),
        graceful_stop_s=d.get("graceful_stop_s", 5.0),
        think_time_s=d.get("think_time_s", 0.0),
        pace_s=d.get("pace_s"),
        ramp_up_s=d.get("ramp_up_s", 0.0),
        hold=d.get("hold", False),
        stages=tuple(Stage(s["duration_s"], s["target"]) for s in d.get("stages", ())),
        plan=_from_flat(PlanFigures, plan) if plan is not None else None,
        generator=_decode_generator(generator) if generator is not None else None,
        workers=d.get("workers", 1),
        workers_reason=d.get("workers_reason", ""),
        vus_max_active=d.get("vus_max_active"),
        connections_max=d.get("connections_max"),
        source_addresses=tuple(d.get("source_addresses", ())),
        nofile=d.get("nofile"),
        incomplete_workers=tuple(d.get("incomplete_workers", ())),
        stop_reason=d.get("stop_reason", ""),
        shards=d.get("shards"),
        shards_merged=tuple(d.get("shards_merged", ())),
        shards_missing=tuple(d.get("shards_missing", ())),
    )


def _encode_generator(g: GeneratorFigures) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workers": [_flat(w) for w in g.workers],
        "seconds": g.seconds,
        "saturated_seconds": g.saturated_seconds,
        "saturated_share": g.saturated_share,
        "samples_in_saturated": g.samples_in_saturated,
        "cpu_max": g.cpu_max,
        "loop_lag_ms": _latency_map(g.loop_lag_ms),
    }
    if g.saturated_when is not None:
        out["saturated_when"] = _flat(g.saturated_when)
    return out


def _decode_generator(d: Mapping[str, Any]) -> GeneratorFigures:
    bounds = d.get("saturated_when")
    return GeneratorFigures(
        workers=tuple(_decode_worker(w) for w in d.get("workers", ())),
        seconds=d.get("seconds", 0),
        saturated_seconds=d.get("saturated_seconds", 0),
        samples_in_saturated=d.get("samples_in_saturated", 0.0),
        loop_lag_ms=_latency_map(d.get("loop_lag_ms")),
        saturated_when=_from_flat(SaturationBounds, bounds) if bounds else None,
        saturated_share=d.get("saturated_share"),
        cpu_max=d.get("cpu_max"),
    )


def _decode_worker(d: Mapping[str, Any]) -> WorkerFigures:
    return WorkerFigures(
        name=d["name"],
        seconds=d.get("seconds", 0),
        cpu_mean=d.get("cpu_mean", 0.0),
        cpu_max=d.get("cpu_max", 0.0),
        loop_lag_ms=_latency_map(d.get("loop_lag_ms")),
        saturated_seconds=d.get("saturated_seconds", 0),
        send_blocked_max=d.get("send_blocked_max", 0),
    )


# --- a shard's data -------------------------------------------------------------------------------


def _encode_shard(shard: ShardInfo) -> dict[str, Any]:
    return {
        "index": shard.index,
        "count": shard.count,
        "scenario_file": shard.scenario_file,
        "scenario_name": shard.scenario_name,
        "scenario_sha256": shard.scenario_sha256,
        "plan": plan_to_json(shard.plan),
        "thresholds": thresholds_to_json(shard.thresholds),
        "start_unix_ns": shard.start_unix_ns,
        "lost": shard.lost,
        "recorder": shard.recorder,
    }


def _decode_shard(d: Mapping[str, Any]) -> ShardInfo:
    try:
        return ShardInfo(
            index=int(d["index"]),
            count=int(d["count"]),
            scenario_file=str(d.get("scenario_file", "")),
            scenario_name=str(d.get("scenario_name", "")),
            scenario_sha256=str(d["scenario_sha256"]),
            plan=plan_from_json(d["plan"]),
            thresholds=thresholds_from_json(d["thresholds"]),
            start_unix_ns=int(d["start_unix_ns"]),
            recorder=d["recorder"],
            lost=bool(d.get("lost", False)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ShardDataError(str(exc)) from exc


def plan_to_json(load: LoadSpec) -> dict[str, Any]:
    """The load plan (after command-line overrides) as a shard report keeps it: shards of equal
    plans merge, others do not."""
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
    """The load plan ``plan_to_json`` wrote (what the merge needs of it: schedule, hold, pauses)."""
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
    """A scenario's thresholds as parsed, so a merge evaluates them without the scenario file."""
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
