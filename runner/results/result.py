"""The finished run as frozen values: what every report is a pure function of.

``runner.results.codec`` turns a ``RunResult`` into the JSON report's document (described by
``runner/schemas/report.schema.json``) and back, so reports can be re-rendered from a saved JSON
file. Each step keeps its latency histogram (compressed base64 HDR) so thresholds over several
steps, and results of several machines, combine exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from runner import __version__
from runner.results.load_figures import LoadSummary
from runner.results.recorders import (
    LatencyHistogram,
    Percentiles,
    RunRecorder,
    SecondCounts,
    StepRecorder,
    new_hdr,
)
from runner.results.shard_info import ShardInfo
from runner.results.verdict import measurement_problems

__all__ = [
    "LATENCY_FIELDS",
    "OPERATION_KINDS",
    "ErrorGroup",
    "FailureRecord",
    "IterationCounts",
    "LatencySummary",
    "Reach",
    "RunResult",
    "RunSettings",
    "SecondSample",
    "StepResult",
    "ThresholdResult",
    "TlsInfo",
    "build_result",
]

#: The figures of a ``LatencySummary``, in the report's order.
LATENCY_FIELDS = ("p50", "p90", "p95", "p99", "p999", "max", "mean", "min")
#: Step kinds that are operations on the network and can fail; sleeps and blocks cannot.
OPERATION_KINDS = frozenset({"open", "write", "read", "receive", "close", "ping"})


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

    def percentiles(self) -> dict[str, float]:
        """The figures by name (``LATENCY_FIELDS``): how the report writes a latency, and the
        form of the latencies a load run keeps by percentile (``runner.results.load_figures``)."""
        return {
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "p999": self.p999,
            "max": self.max,
            "mean": self.mean,
            "min": self.min,
        }


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
class Reach:
    """A read's reach (``latency_from.id``): ``messages`` distinct ids received; per message,
    how many reads received it (``receivers_min``/``_median``/``_max`` over the messages) and the
    time until the last of them did (``time_ms``: percentiles over the messages of each one's
    largest delivery latency). ``overflow``: deliveries of ids beyond the per-process cap
    (``MAX_REACH_IDS``), left out of these figures."""

    messages: int
    receivers_min: int
    receivers_median: float
    receivers_max: int
    time_ms: LatencySummary | None
    overflow: int = 0

    @classmethod
    def of(cls, reach: Mapping[str, Sequence[int]] | None, overflow: int) -> Reach | None:
        if not reach:
            return None
        counts = sorted(r[0] for r in reach.values())
        times = LatencyHistogram()
        for _, latest_ns in reach.values():
            times.record_ns(latest_ns)
        n = len(counts)
        median = counts[n // 2] if n % 2 else (counts[n // 2 - 1] + counts[n // 2]) / 2
        return cls(n, counts[0], median, counts[-1], LatencySummary.of(times.summary()), overflow)


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
    #: Reads with ``latency_from``: from the send time stamped in the message (the sender's
    #: clock) to its parse here (this machine's wall clock); ``delivery_ahead``: messages whose
    #: stamp was later than their arrival (clocks apart), recorded as 0.
    delivery_ms: LatencySummary | None = None
    delivery_histogram: str = ""
    delivery_ahead: int = 0
    reach: Reach | None = None
    #: Receives: messages taken (matched and passed their checks), in every execution, those
    #: that failed or were cut by the end included; and the longest wait for one, from the
    #: receive's start or the message before, in milliseconds.
    received: int = 0
    received_gap_max_ms: float = 0.0

    @property
    def can_fail(self) -> bool:
        """An operation on the network (open, write, read, receive, close, ping), not a sleep
        or block: what ``errors.rate`` counts over."""
        return self.kind in OPERATION_KINDS

    @property
    def messages(self) -> int:
        """Messages the step moved: a read's or write's passed executions, a receive's messages
        (what ``messages.count`` adds up)."""
        if self.kind == "receive":
            return self.received
        return self.ok if self.kind in ("read", "write") else 0

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
            delivery_ms=LatencySummary.of(rec.delivery.summary()) if rec.delivery is not None else None,
            delivery_histogram=rec.delivery.serialize()["hdr"]
            if rec.delivery is not None and rec.delivery.count
            else "",
            delivery_ahead=rec.delivery_ahead,
            reach=Reach.of(rec.reach, rec.reach_overflow),
            received=rec.received,
            received_gap_max_ms=_r(rec.received_gap_max_ns / 1e6),
        )

    def hdr(self, figure: str = "latency") -> HdrHistogram:
        """The step's histogram (microseconds) of ``figure``: ``latency`` (``histogram``),
        ``response`` or ``delivery``."""
        hist = new_hdr()
        encoded = {
            "latency": self.histogram,
            "response": self.response_histogram,
            "delivery": self.delivery_histogram,
        }[figure]
        if encoded:
            hist.decode_and_add(encoded.encode("ascii"))
        return hist


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


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    expression: str
    value: float | None  # the observed value, in the threshold's base unit; None: no data
    passed: bool
    line: int
    limit: float = 0.0
    message: str = ""
    default: bool = False  # one of the plan checks every load run gets (not written in the file)
    file: str = ""  # the file it was written in ("plan" for a plan check, "--threshold", "" unknown)


@dataclass(frozen=True, slots=True)
class TlsInfo:
    verified: bool = True
    ignored_errors: tuple[str, ...] = ()  # certificate errors met and ignored
    allowed: tuple[str, ...] = ()  # what the scenario allows to ignore ("all": verification off)


@dataclass(frozen=True, slots=True)
class SecondSample:
    """One second of the run (``t`` since the start): iterations started and ended, step
    executions ended and failed, messages moved, non-success return codes, the latency of the
    reads that ended in it (by percentile, ``LatencySummary.percentiles()``); in load runs the
    gauges (active users, open connections, users pausing after a failure), open-model starts
    dropped, and the generator's health (the busiest worker's CPU share, the largest loop lag,
    connections with a full send buffer, whether any worker was saturated). ``partial``: the
    last second, with the share of it the run covered, so a reader (and the charts) can tell a
    short last second from a collapse. None: not measured in that second."""

    t: int
    starts: int
    steps: int
    failures: int
    rc: Mapping[str, int]
    iterations: int | None = None
    messages: int | None = None
    vus: int | None = None
    connections: int | None = None
    paused: int | None = None
    dropped: int | None = None
    latency_ms: Mapping[str, float] | None = None
    cpu: float | None = None
    loop_lag_ms: float | None = None
    send_blocked: int | None = None
    saturated: bool | None = None
    partial: float | None = None


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How the run ran: ``mode`` (``check``, ``load``, ``capacity``), the scenario's read and
    run time-outs, a load run's figures, a shard's data for an exact merge, and for a merge of
    shard reports the reports it was made from. None: not part of this run."""

    mode: str | None = None
    read_timeout_s: float | None = None
    run_timeout_s: float | None = None
    load: LoadSummary | None = None
    shard: ShardInfo | None = None
    merged_from: tuple[str, ...] | None = None
    #: The seed the users drew their think times from (only when some sleep draws them).
    seed: int | None = None


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
    timeseries: tuple[SecondSample, ...] = ()
    settings: RunSettings = field(default_factory=RunSettings)
    connect_ms: Mapping[str, LatencySummary] = field(default_factory=dict)  # all opens, merged
    #: Why the run did not measure what it set out to (each fails it): internal errors, steps
    #: that never completed, no iteration completed, a plan not delivered. Also in ``error``.
    problems: tuple[str, ...] = ()
    wsload_version: str = __version__
    #: A plan's populations, each its own result (its steps named as in its file, its
    #: thresholds and plan checks); the run's own steps are theirs named ``POPULATION/STEP``.
    populations: tuple[RunResult, ...] = ()

    def file_of(self, name: str) -> str:
        """The file that declared a step, failure or threshold named ``name``: in a plan, the
        file of the population whose name it starts with (``POPULATION/...``)."""
        head, slash, _ = name.partition("/")
        if slash:
            for population in self.populations:
                if population.scenario_name == head:
                    return population.scenario_file
        return self.scenario_file

    def with_thresholds(self, thresholds: tuple[ThresholdResult, ...]) -> RunResult:
        """The same result with thresholds evaluated, and ``passed``/``exit_code`` following them."""
        passed = self.passed and all(t.passed for t in thresholds)
        code = self.exit_code
        if code == 0 and not passed:
            code = 1
        return replace(self, thresholds=thresholds, passed=passed, exit_code=code)


def _connect(recorder: RunRecorder) -> dict[str, LatencySummary]:
    """The connect split of every open step, histograms merged (phase -> summary)."""
    merged: dict[str, LatencyHistogram] = {}
    for rec in recorder.steps.values():
        for phase, hist in (rec.connect or {}).items():
            merged.setdefault(phase, LatencyHistogram()).merge(hist.serialize())
    return {k: s for k, h in merged.items() if (s := LatencySummary.of(h.summary())) is not None}


@dataclass(slots=True)
class _Health:
    """The generator in one second over all workers: the busiest CPU share, the largest loop
    lag, connections with a full send buffer, whether any worker was saturated."""

    cpu: float = 0.0
    lag_ns: int = 0
    send_blocked: int = 0
    saturated: bool = False


def _seconds(recorder: RunRecorder, duration_s: float) -> tuple[SecondSample, ...]:
    """The per-second samples of the report: each second's counts and read latency, the gauges,
    and the generator's health; the second the run ended in is marked ``partial`` with the
    share of it the run covered."""
    health: dict[int, _Health] = {}
    for w in recorder.health.workers.values():
        for t, (cpu, lag_ns, blocked, saturated) in w.seconds.items():
            h = health.setdefault(t, _Health())
            h.cpu, h.lag_ns = max(h.cpu, cpu), max(h.lag_ns, lag_ns)
            h.send_blocked += blocked
            h.saturated = h.saturated or saturated
    last = int(duration_s)
    covered = round(duration_s - last, 3)
    series = recorder.timeseries
    return tuple(
        _second(
            counts,
            series.summary_of(counts),
            health.get(counts.t),
            covered if counts.t == last and 0 < covered < 0.999 else None,
        )
        for counts in series.samples()
    )


def _second(
    counts: SecondCounts, latency: Percentiles | None, health: _Health | None, partial: float | None
) -> SecondSample:
    summary = LatencySummary.of(latency)
    gauged = counts.vus is not None
    return SecondSample(
        t=counts.t,
        starts=counts.starts,
        steps=counts.steps,
        failures=counts.failures,
        rc=dict(counts.rc),
        iterations=counts.ended,
        messages=counts.messages,
        vus=counts.vus,
        connections=counts.connections if gauged else None,
        paused=(counts.paused or 0) if gauged else None,
        dropped=counts.dropped or None,
        latency_ms=summary.percentiles() if summary else None,
        cpu=health.cpu if health is not None else None,
        loop_lag_ms=round(health.lag_ns / 1e6, 3) if health is not None else None,
        send_blocked=health.send_blocked if health is not None else None,
        saturated=health.saturated if health is not None else None,
        partial=partial,
    )


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
    settings: RunSettings | None = None,
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
        *measurement_problems(
            steps,
            iterations,
            interrupted=interrupted,
            hold=hold,
            explained=bool(error),
            duration_s=duration_s,
        ),
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
        timeseries=_seconds(recorder, duration_s),
        connect_ms=_connect(recorder),
        settings=settings or RunSettings(),
        problems=tuple(found),
    )
