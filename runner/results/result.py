"""The finished run as frozen values: what every report is a pure function of.

``RunResult.to_json()`` is the JSON report's document (described by
``runner/schemas/report.schema.json``); ``RunResult.from_json()`` reads it back, so reports can
be re-rendered from a saved JSON file. Each step keeps its latency histogram (compressed base64 HDR)
so thresholds over several steps, and results of several machines, combine exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from runner import __version__
from runner.results.recorders import LatencyHistogram, Percentiles, RunRecorder, StepRecorder, new_hdr
from runner.results.verdict import measurement_problems

__all__ = [
    "OPERATION_KINDS",
    "ErrorGroup",
    "FailureRecord",
    "IterationCounts",
    "LatencySummary",
    "RunResult",
    "StepResult",
    "ThresholdResult",
    "TlsInfo",
    "build_result",
]

_LAT_KEYS = ("p50", "p90", "p95", "p99", "p999", "max", "mean", "min")
#: Step kinds that are operations on the network and can fail; sleeps and blocks cannot.
OPERATION_KINDS = frozenset({"open", "write", "read", "close", "ping"})


def _r(x: float) -> float:
    return round(x, 3)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Percentiles (from an HDR histogram) and exact max/mean, in milliseconds."""

    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float
    mean: float
    min: float = 0.0

    @classmethod
    def of(cls, p: Percentiles | None) -> LatencySummary | None:
        if p is None:
            return None
        return cls(_r(p.p50), _r(p.p90), _r(p.p95), _r(p.p99), _r(p.p999), _r(p.max), _r(p.mean), _r(p.min))

    def to_json(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in _LAT_KEYS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> LatencySummary | None:
        if data is None:
            return None
        return cls(**{k: float(data[k]) for k in _LAT_KEYS if k in data})


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    rc: int
    message: str
    count: int


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """A failed expectation (grouped by step and message): where, what was wanted, what came."""

    step: str
    line: int
    message: str
    expected: str
    actual: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    kind: str
    connection: str
    line: int
    count: int
    ok: int
    failures: int
    skipped: int
    skipped_messages: int
    rc: Mapping[str, int]
    latency_ms: LatencySummary | None
    errors: tuple[ErrorGroup, ...]
    connect_ms: Mapping[str, LatencySummary] | None = None
    histogram: str = ""  # compressed base64 HDR of latency in microseconds
    #: Executions still in flight when the run ended (not in ``count``), and the longest and
    #: mean time they had waited by then, in milliseconds.
    pending: int = 0
    pending_max_ms: float = 0.0
    pending_mean_ms: float = 0.0
    #: Executions that raised inside wsload (also in ``failures``); any fails the run.
    internal_errors: int = 0
    #: Reads that returned 1, by the peer's close code and reason ("1000 bye", "no close frame").
    closes: Mapping[str, int] = field(default_factory=dict)
    #: Reads: the response time, from the start of the write step that asked (or of the read,
    #: when nothing was written first) to the read's end: what the scenario's code saw, our own
    #: queueing included. ``latency_ms`` is the request handed to the kernel to the answer parsed.
    response_ms: LatencySummary | None = None
    response_histogram: str = ""

    @property
    def can_fail(self) -> bool:
        """An operation on the network (open, write, read, close, ping), not a sleep or block:
        what ``errors.rate`` counts over."""
        return self.kind in OPERATION_KINDS

    @classmethod
    def of(cls, rec: StepRecorder) -> StepResult:
        connect = None
        if rec.connect is not None:
            connect = {
                k: s for k, h in rec.connect.items() if (s := LatencySummary.of(h.summary())) is not None
            }
        return cls(
            name=rec.name,
            kind=rec.kind,
            connection=rec.connection,
            line=rec.line,
            count=rec.count,
            ok=rec.ok,
            failures=rec.failures,
            skipped=rec.skipped,
            skipped_messages=rec.skipped_messages,
            rc=dict(sorted(rec.rc.items(), key=lambda kv: int(kv[0]))),
            latency_ms=LatencySummary.of(rec.latency.summary()),
            errors=tuple(ErrorGroup(rc, msg, n) for rc, msg, n in rec.error_groups()),
            connect_ms=connect or None,
            histogram=rec.latency.serialize()["hdr"] if rec.latency.count else "",
            pending=rec.pending,
            pending_max_ms=_r(rec.pending_max_ns / 1e6),
            pending_mean_ms=_r(rec.pending_sum_ns / rec.pending / 1e6) if rec.pending else 0.0,
            internal_errors=rec.internal_errors,
            closes=dict(sorted(rec.closes.items(), key=lambda kv: (-kv[1], kv[0]))),
            response_ms=LatencySummary.of(rec.response.summary()) if rec.response is not None else None,
            response_histogram=rec.response.serialize()["hdr"]
            if rec.response is not None and rec.response.count
            else "",
        )

    def hdr(self, response: bool = False) -> HdrHistogram:
        """The step's latency histogram (microseconds), decoded from ``histogram``; with
        ``response``, the response-time histogram."""
        hist = new_hdr()
        encoded = self.response_histogram if response else self.histogram
        if encoded:
            hist.decode_and_add(encoded.encode("ascii"))
        return hist

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "connection": self.connection,
            "line": self.line,
            "count": self.count,
            "ok": self.ok,
            "failures": self.failures,
            "skipped": self.skipped,
            "skipped_messages": self.skipped_messages,
            "rc": dict(self.rc),
            "latency_ms": self.latency_ms.to_json() if self.latency_ms else None,
            "errors": [{"rc": e.rc, "message": e.message, "count": e.count} for e in self.errors],
            "connect_ms": {k: v.to_json() for k, v in self.connect_ms.items()} if self.connect_ms else None,
            "histogram": self.histogram,
            "pending": self.pending,
            "pending_max_ms": self.pending_max_ms,
            "pending_mean_ms": self.pending_mean_ms,
            "internal_errors": self.internal_errors,
            "closes": dict(self.closes),
            "response_ms": self.response_ms.to_json() if self.response_ms else None,
            "response_histogram": self.response_histogram,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StepResult:
        connect = d.get("connect_ms")
        return cls(
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
            latency_ms=LatencySummary.from_json(d.get("latency_ms")),
            errors=tuple(ErrorGroup(e["rc"], e["message"], e["count"]) for e in d.get("errors", [])),
            connect_ms=(
                {k: s for k, v in connect.items() if (s := LatencySummary.from_json(v)) is not None}
                if connect
                else None
            ),
            histogram=d.get("histogram", ""),
            pending=d.get("pending", 0),
            pending_max_ms=d.get("pending_max_ms", 0.0),
            pending_mean_ms=d.get("pending_mean_ms", 0.0),
            internal_errors=d.get("internal_errors", 0),
            closes=dict(d.get("closes", {})),
            response_ms=LatencySummary.from_json(d.get("response_ms")),
            response_histogram=d.get("response_histogram", ""),
        )


@dataclass(frozen=True, slots=True)
class IterationCounts:
    """Iterations of the run: begun, and of those ended with every step passed (completed),
    ended at a failed step (failed), or cut before their end by the end of the run, a signal or
    an abort (interrupted). "Iterations" alone means ``ended``: cut ones never count."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    interrupted: int = 0

    @property
    def ended(self) -> int:
        return self.completed + self.failed

    @classmethod
    def of(cls, rec: RunRecorder) -> IterationCounts:
        return cls(
            rec.iterations_started,
            rec.iterations_completed,
            rec.iterations_failed,
            rec.iterations_interrupted,
        )

    def to_json(self) -> dict[str, int]:
        return {
            "started": self.started,
            "ended": self.ended,
            "completed": self.completed,
            "failed": self.failed,
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> IterationCounts:
        it = d.get("iterations", 0)
        if isinstance(it, Mapping):
            return cls(int(it["started"]), int(it["completed"]), int(it["failed"]), int(it["interrupted"]))
        # A report written before iterations were split: its count included cut ones.
        failed = int(d.get("iterations_failed", 0))
        return cls(int(it), max(int(it) - failed, 0), failed, 0)


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    expression: str
    value: float | None  # the observed value, in the threshold's base unit; None: no data
    passed: bool
    line: int
    limit: float = 0.0
    message: str = ""
    default: bool = False  # one of the plan checks every load run gets (not written in the file)


@dataclass(frozen=True, slots=True)
class TlsInfo:
    verified: bool = True
    ignored_errors: tuple[str, ...] = ()  # certificate errors met and ignored
    allowed: tuple[str, ...] = ()  # what the scenario allows to ignore ("all": verification off)


@dataclass(frozen=True, slots=True)
class RunResult:
    passed: bool
    interrupted: bool
    exit_code: int
    scenario_name: str
    scenario_file: str
    started_at: str
    duration_s: float
    target: str
    steps: tuple[StepResult, ...]
    iterations: IterationCounts = field(default_factory=IterationCounts)
    thresholds: tuple[ThresholdResult, ...] = ()
    failures: tuple[FailureRecord, ...] = ()
    failures_dropped: int = 0
    tls: TlsInfo = field(default_factory=TlsInfo)
    error: str = ""  # a run-level problem, e.g. the overall time-out
    timeseries: tuple[Mapping[str, Any], ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    connect_ms: Mapping[str, LatencySummary] = field(default_factory=dict)  # all opens, merged
    #: Why the run did not measure what it set out to (each fails it): internal errors, steps
    #: that never completed, no iteration completed, a plan not delivered. Also in ``error``.
    problems: tuple[str, ...] = ()
    wsload_version: str = __version__

    def with_thresholds(self, thresholds: tuple[ThresholdResult, ...]) -> RunResult:
        """The same result with thresholds evaluated, and ``passed``/``exit_code`` following them."""
        passed = self.passed and all(t.passed for t in thresholds)
        code = self.exit_code
        if code == 0 and not passed:
            code = 1
        return replace(self, thresholds=thresholds, passed=passed, exit_code=code)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "interrupted": self.interrupted,
            "exit_code": self.exit_code,
            "scenario": {"name": self.scenario_name, "file": self.scenario_file},
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "target": self.target,
            "tls": {
                "verified": self.tls.verified,
                "ignored_errors": list(self.tls.ignored_errors),
                "allowed": list(self.tls.allowed),
            },
            "iterations": self.iterations.to_json(),
            "error": self.error,
            "problems": list(self.problems),
            "steps": [s.to_json() for s in self.steps],
            "connect_ms": {k: v.to_json() for k, v in self.connect_ms.items()},
            "thresholds": [
                {
                    "expression": t.expression,
                    "value": t.value,
                    "passed": t.passed,
                    "line": t.line,
                    "limit": t.limit,
                    "message": t.message,
                    "default": t.default,
                }
                for t in self.thresholds
            ],
            "failures": [
                {
                    "step": f.step,
                    "line": f.line,
                    "message": f.message,
                    "expected": f.expected,
                    "actual": f.actual,
                    "count": f.count,
                }
                for f in self.failures
            ],
            "failures_dropped": self.failures_dropped,
            "timeseries": [dict(t) for t in self.timeseries],
            "settings": dict(self.settings),
            "wsload_version": self.wsload_version,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunResult:
        return cls(
            passed=d["passed"],
            interrupted=d.get("interrupted", False),
            exit_code=d.get("exit_code", 0 if d["passed"] else 1),
            scenario_name=d["scenario"]["name"],
            scenario_file=d["scenario"]["file"],
            started_at=d["started_at"],
            duration_s=d["duration_s"],
            target=d.get("target", ""),
            steps=tuple(StepResult.from_json(s) for s in d["steps"]),
            iterations=IterationCounts.from_json(d),
            thresholds=tuple(
                ThresholdResult(
                    t["expression"],
                    t["value"],
                    t["passed"],
                    t.get("line", 0),
                    t.get("limit", 0.0),
                    t.get("message", ""),
                    t.get("default", False),
                )
                for t in d.get("thresholds", [])
            ),
            failures=tuple(
                FailureRecord(f["step"], f["line"], f["message"], f["expected"], f["actual"], f["count"])
                for f in d.get("failures", [])
            ),
            failures_dropped=d.get("failures_dropped", 0),
            tls=_tls_from_json(d.get("tls")),
            error=d.get("error", ""),
            timeseries=tuple(d.get("timeseries", [])),
            connect_ms={
                k: s
                for k, v in d.get("connect_ms", {}).items()
                if (s := LatencySummary.from_json(v)) is not None
            },
            settings=dict(d.get("settings", {})),
            problems=tuple(d.get("problems", ())),
            wsload_version=d.get("wsload_version", __version__),
        )


def _tls_from_json(d: Mapping[str, Any] | None) -> TlsInfo:
    if d is None:
        return TlsInfo()
    return TlsInfo(d["verified"], tuple(d["ignored_errors"]), tuple(d.get("allowed", [])))


def _connect(recorder: RunRecorder) -> dict[str, LatencySummary]:
    """The connect split of every open step, histograms merged (phase -> summary)."""
    merged: dict[str, LatencyHistogram] = {}
    for rec in recorder.steps.values():
        for phase, hist in (rec.connect or {}).items():
            merged.setdefault(phase, LatencyHistogram()).merge(hist.serialize())
    return {k: s for k, h in merged.items() if (s := LatencySummary.of(h.summary())) is not None}


def _timeseries(recorder: RunRecorder, duration_s: float) -> tuple[dict[str, Any], ...]:
    """The per-second series of the report: each second's counts, read latency percentiles, the
    gauges, and the generator's health (the busiest worker's CPU share, the largest loop lag,
    connections with a full send buffer, whether any worker was saturated). The second the run
    ended in is marked ``partial`` with the share of it the run covered, so a reader (and the
    charts) can tell a short last second from a collapse."""
    health: dict[int, list[Any]] = {}
    for w in recorder.health.workers.values():
        for t, (cpu, lag, blocked, sat) in w.seconds.items():
            h = health.setdefault(t, [0.0, 0, 0, False])
            h[0], h[1] = max(h[0], cpu), max(h[1], lag)
            h[2] += blocked
            h[3] = h[3] or sat
    last = int(duration_s)
    covered = round(duration_s - last, 3)
    out = []
    for entry in recorder.timeseries.serialize():
        hist = entry.pop("latency")
        summary = LatencySummary.of(LatencyHistogram.from_serialized(hist).summary()) if hist else None
        entry["latency_ms"] = summary.to_json() if summary else None
        sample = health.get(entry["t"])
        if sample is not None:
            entry["cpu"], entry["loop_lag_ms"] = sample[0], round(sample[1] / 1e6, 3)
            entry["send_blocked"], entry["saturated"] = sample[2], sample[3]
        if entry["t"] == last and 0 < covered < 0.999:
            entry["partial"] = covered
        out.append(entry)
    return tuple(out)


def build_result(
    recorder: RunRecorder,
    *,
    scenario_name: str,
    scenario_file: str,
    started_at: str,
    duration_s: float,
    target: str,
    interrupted: bool = False,
    error: str = "",
    tls: TlsInfo | None = None,
    settings: Mapping[str, Any] | None = None,
    hold: bool = False,
    problems: Sequence[str] = (),
) -> RunResult:
    """Freeze a finished recorder into a result (thresholds are added by ``with_thresholds``).

    The run fails on any of ``runner.results.verdict``'s problems (``hold``: iterations are meant to last
    until the end of the run) and on ``problems`` the caller found (a plan not delivered)."""
    steps = tuple(StepResult.of(rec) for rec in recorder.steps.values())
    failures = tuple(
        FailureRecord(step, line, msg, exp, act, n)
        for (step, msg), (line, exp, act, n) in recorder.failures.items()
    )
    iterations = IterationCounts.of(recorder)
    found = [
        *measurement_problems(steps, iterations, interrupted=interrupted, hold=hold, explained=bool(error)),
        *problems,
    ]
    if found:
        error = "; ".join(x for x in (error, *found) if x)
    passed = not interrupted and not error and all(s.failures == 0 for s in steps)
    code = 130 if interrupted else 0 if passed else 1
    return RunResult(
        passed=passed,
        interrupted=interrupted,
        exit_code=code,
        scenario_name=scenario_name,
        scenario_file=scenario_file,
        started_at=started_at,
        duration_s=duration_s,
        target=target,
        steps=steps,
        iterations=iterations,
        failures=failures,
        failures_dropped=recorder.failures_dropped,
        tls=tls or TlsInfo(),
        error=error,
        timeseries=_timeseries(recorder, duration_s),
        connect_ms=_connect(recorder),
        settings=dict(settings or {}),
        problems=tuple(found),
    )
