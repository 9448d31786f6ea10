"""Thresholds: the names they can use (one catalog), their grammar, and their evaluation.

A threshold is ``SUBJECT.STAT OP VALUE`` (``read.p99 < 50ms``, ``errors.rate < 0.1%``). SUBJECT is
a step name, a step kind (every step of that kind, histograms merged) or a run-wide subject;
``CATALOG`` lists every (subject, stat) with its unit and one exact meaning, and is what
``wsload metrics``, the README's table and the parser all read. Values are written in the
metric's unit and kept in its base unit: seconds, a count, a fraction (``0.1%`` or ``0.001``),
or events per second (``500`` or ``500/s``).

Evaluation is pure: a function of a finished ``RunResult``. A metric with no samples is "no data"
and loses its threshold with the reason, unless the threshold accepts no data.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from runner.errors import InvalidThreshold
from runner.results.recorders import new_hdr
from runner.results.result import LatencySummary, RunResult, StepResult, ThresholdResult
from runner.scenario.model import Location, Threshold
from runner.scenario.units import UnitError, parse_bound, parse_fraction, parse_rate
from runner.scenario.validation import closest

__all__ = [
    "CATALOG",
    "OPS",
    "RUN_SUBJECTS",
    "MetricName",
    "evaluate",
    "metrics_table",
    "observed",
    "parse_threshold",
]

Unit = Literal["duration", "count", "fraction", "per_s"]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_PERCENTILE = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
_LATENCY_STATS = ("p50", "p90", "p95", "p99", "p999", "max", "mean", "min")


@dataclass(frozen=True, slots=True)
class MetricName:
    """One name a threshold can use: ``subject`` is ``STEP`` for any step name or kind."""

    subject: str
    stat: str
    unit: Unit
    meaning: str

    @property
    def name(self) -> str:
        return f"{self.subject}.{self.stat}"


def _latency(subject: str, what: str) -> list[MetricName]:
    """The eight latency figures of one subject (percentiles from the merged HDR histograms,
    exact max/mean/min); one row in ``metrics_table``."""
    return [MetricName(subject, stat, "duration", what) for stat in _LATENCY_STATS]


#: Every name a threshold can use, with its unit and meaning (README and ``wsload metrics``).
CATALOG: tuple[MetricName, ...] = (
    *_latency(
        "STEP",
        "latency of the step's ended executions (open: the whole connect; write: the write call; "
        "read: from the last write on its connection handed to the kernel, or the read's start, "
        "to the message parsed; receive: how long it lasted; ping: the round trip; close: the close "
        "handshake; sleep: the time slept)",
    ),
    *(
        MetricName(
            "STEP",
            f"response_{stat}",
            "duration",
            "reads: response time, from the start of the write step that asked (or of the read "
            "itself) to the read's end: what the scenario's code saw, the generator's own queueing "
            "included",
        )
        for stat in _LATENCY_STATS
    ),
    *(
        MetricName(
            "STEP",
            f"delivery_{stat}",
            "duration",
            "reads and receives with latency_from: delivery latency, from the send time stamped in a message "
            "(the sender's clock) to its parse here (this machine's wall clock); publish-to-subscriber "
            "for a fan-out",
        )
        for stat in _LATENCY_STATS
    ),
    MetricName(
        "STEP",
        "reach_min",
        "count",
        "reads with latency_from.id: the fewest reads that received one message (its reach), over "
        "the messages received; with several steps, the fewest of theirs",
    ),
    MetricName(
        "STEP",
        "reach_max",
        "count",
        "reads with latency_from.id: the most reads that received one message; with several steps, "
        "the most of theirs",
    ),
    *(
        MetricName(
            "STEP",
            f"reach_time_{stat}",
            "duration",
            "reads with latency_from.id: per message, the time until the last read that got it did "
            "(its largest delivery latency), over the messages; with several steps, the largest of theirs",
        )
        for stat in _LATENCY_STATS
    ),
    MetricName("STEP", "count", "count", "executions that ended (passed or failed); cut ones are `pending`"),
    MetricName("STEP", "failures", "count", "executions that failed (an unexpected rc or expectation)"),
    MetricName("STEP", "failure_rate", "fraction", "failures / count"),
    MetricName("STEP", "per_s", "per_s", "executions that ended, per second of the run"),
    MetricName("STEP", "pending", "count", "executions still in flight when the run ended"),
    MetricName(
        "STEP",
        "received",
        "count",
        "receive steps: messages taken (matched and passed their checks), counted as they arrived, "
        "in every execution (failed ones and those cut by the end of the run included)",
    ),
    MetricName("STEP", "received_per_s", "per_s", "STEP.received per second of the run"),
    MetricName("iterations", "count", "count", "iterations that ended: completed + failed (never cut ones)"),
    MetricName("iterations", "completed", "count", "iterations that ended with every step passed"),
    MetricName("iterations", "failed", "count", "iterations that ended at a failed step"),
    MetricName(
        "iterations", "interrupted", "count", "iterations cut before their end (end of the run, a signal)"
    ),
    MetricName("iterations", "dropped", "count", "open model: starts not made because max_vus were busy"),
    MetricName("iterations", "failure_rate", "fraction", "iterations.failed / iterations.count"),
    MetricName("iterations", "per_s", "per_s", "iterations that ended, per second of the run"),
    *_latency(
        "iterations",
        "duration of ended iterations in a load run (open model: from the intended start, so a late "
        "start counts)",
    ),
    MetricName(
        "errors",
        "count",
        "count",
        "failed operations (open, write, read, receive, close, ping executions that failed)",
    ),
    MetricName(
        "errors",
        "rate",
        "fraction",
        "errors.count / operations that ended (sleeps and blocks are not operations)",
    ),
    MetricName("errors", "per_s", "per_s", "failed operations per second of the run"),
    MetricName("checks", "count", "count", "operations that passed"),
    MetricName("checks", "rate", "fraction", "checks.count / operations that ended (1 - errors.rate)"),
    MetricName(
        "messages",
        "count",
        "count",
        "messages moved: reads and writes that passed, and the messages receive steps took",
    ),
    MetricName("messages", "per_s", "per_s", "messages.count per second of the run"),
    MetricName(
        "plan",
        "delivered",
        "fraction",
        "load run: open model, starts made / starts the plan had due by the end (same schedule: "
        "ramps and stages included); closed model, active users / planned users, summed over "
        "the run's whole seconds",
    ),
    MetricName("plan", "dropped", "fraction", "open model: starts dropped at max_vus / starts planned"),
    *_latency("schedule_lag", "open model: how late each start was made (actual - intended)"),
    *_latency(
        "loop_lag",
        "the load generator's event-loop lag: how late a 10 ms timer fired, sampled all run long "
        "in every worker; a message that arrives meanwhile waits that long before it is timed",
    ),
    MetricName(
        "generator", "cpu", "fraction", "the highest CPU share of one core used by any worker in one second"
    ),
    MetricName(
        "generator",
        "saturated",
        "fraction",
        "seconds in which a worker was saturated (CPU >= 90% of its core, or its loop lag's 90th "
        "percentile in that second >= 10 ms) / seconds of the run",
    ),
)

#: Run-wide subjects (anything else must be a step name or kind).
RUN_SUBJECTS = frozenset(m.subject for m in CATALOG if m.subject != "STEP")
_STATS: dict[str, dict[str, MetricName]] = {}
for _m in CATALOG:
    _STATS.setdefault(_m.subject, {})[_m.stat] = _m

_EXPR_RE = re.compile(r"^\s*(?P<lhs>\S.*?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>\S.*?)\s*$")
_RENAMED_RATE = (
    "'{subject}.rate' is not a threshold name any more ('.rate' meant per second here but a "
    "fraction for errors): use '{subject}.per_s' ({what} per second) or '{subject}.failure_rate' "
    "(the failed fraction)"
)


def metrics_table() -> list[tuple[str, str, str]]:
    """(name, unit, meaning) rows of the catalog, for ``wsload metrics`` and the README."""
    units = {
        "duration": "duration (50ms, 1.5s)",
        "count": "count",
        "fraction": "fraction (0.1% or 0.001)",
        "per_s": "per second (500 or 500/s)",
    }
    rows: list[tuple[str, str, str]] = []
    done: set[tuple[str, str]] = set()
    for m in CATALOG:
        if m.unit == "duration":  # a family of eight: one row
            if (m.subject, m.meaning) in done:
                continue
            done.add((m.subject, m.meaning))
            prefix = m.stat.removesuffix("p50") if m.stat.endswith("p50") else ""
            stats = "|".join(_LATENCY_STATS)
            meaning = m.meaning + " (percentiles from the merged HDR histograms; max, mean, min exact)"
            rows.append((f"{m.subject}.{prefix}{{{stats}}}", units[m.unit], meaning))
        else:
            rows.append((m.name, units[m.unit], m.meaning))
    return rows


def _convert(unit: Unit, raw: str) -> float:
    if unit == "duration":
        return parse_bound(raw)
    if unit == "fraction":
        return parse_fraction(raw)
    if unit == "per_s":
        return parse_rate(raw)
    try:
        value = float(raw)
    except ValueError:
        raise UnitError(f"{raw!r} is not a number") from None
    if not value >= 0:
        raise UnitError(f"{raw!r} is not a count")
    return value


def parse_threshold(
    expression: str,
    *,
    step_names: Collection[str],
    kinds: Collection[str],
    location: Location,
    abort_on_fail: bool = False,
    accept_no_data: bool = False,
) -> Threshold:
    """One threshold expression, checked against the scenario's step names and kinds;
    ``InvalidThreshold`` with a message a user can act on (a did-you-mean where one fits)."""
    match = _EXPR_RE.match(expression)
    lhs = match.group("lhs") if match else ""
    if lhs.endswith(".p99.9"):  # the dot of 99.9 would split the name
        raise InvalidThreshold(
            f"threshold '{expression}': the 99.9th percentile is written p999, did you mean "
            f"'{lhs.removesuffix('.p99.9')}.p999'?"
        )
    subject, dot, stat = lhs.rpartition(".")
    if match is None or not dot or not subject:
        raise InvalidThreshold(
            f"'{expression}' is not 'SUBJECT.STAT OP VALUE' (e.g. 'read.p99 < 50ms', 'errors.rate < 0.1%'; "
            "'wsload metrics' lists every name)"
        )
    op, raw = match.group("op"), match.group("value")
    if subject in step_names or subject in kinds:
        table = _STATS["STEP"]
    elif subject in RUN_SUBJECTS:
        table = _STATS[subject]
    else:
        subjects = {*step_names, *kinds, *RUN_SUBJECTS}
        hint = closest(subject, subjects)
        extra = f", did you mean '{hint}'?" if hint else f" (steps: {', '.join(sorted(step_names))})"
        raise InvalidThreshold(f"threshold '{expression}' names no step or metric '{subject}'{extra}")
    metric = table.get(stat)
    if metric is None:
        if stat == "rate" and table is not _STATS.get("errors"):
            what = "iterations ended" if subject == "iterations" else "executions ended"
            raise InvalidThreshold(_RENAMED_RATE.format(subject=subject, what=what))
        hint = closest(stat, set(table))
        extra = f", did you mean '{subject}.{hint}'?" if hint else f" (one of: {', '.join(table)})"
        raise InvalidThreshold(f"threshold '{expression}': '{subject}' has no figure '{stat}'{extra}")
    try:
        value = _convert(metric.unit, raw)
    except (UnitError, ValueError) as exc:
        raise InvalidThreshold(f"threshold value: {exc}") from None
    return Threshold(
        expression=expression,
        subject=subject,
        stat=stat,
        op=op,  # type: ignore[arg-type]
        value=value,
        location=location,
        abort_on_fail=abort_on_fail,
        accept_no_data=accept_no_data,
    )


# --- evaluation ---------------------------------------------------------------------------------


def _steps_of(subject: str, result: RunResult) -> list[StepResult]:
    named = [s for s in result.steps if s.name == subject]
    if named:
        return named
    return [s for s in result.steps if s.kind == subject]


def _reach(stat: str, steps: Sequence[StepResult]) -> float | None:
    """A reach figure of the steps (``STEP.reach_min``, ``reach_max``, ``reach_time_p99`` ...):
    of one step exactly; of several, the least reach and the largest time of theirs."""
    reached = [s.reach for s in steps if s.reach is not None]
    if not reached:
        return None
    if stat == "reach_min":
        return float(min(r.receivers_min for r in reached))
    if stat == "reach_max":
        return float(max(r.receivers_max for r in reached))
    times = [getattr(r.time_ms, stat.removeprefix("reach_time_")) for r in reached if r.time_ms is not None]
    return max(times) / 1000.0 if times else None


def _step_latency(stat: str, steps: Sequence[StepResult], figure: str = "latency") -> float | None:
    """A latency stat of the steps (histograms merged) of ``figure``: latency, response, delivery."""

    def summary(s: StepResult) -> LatencySummary | None:
        return {"latency": s.latency_ms, "response": s.response_ms, "delivery": s.delivery_ms}[figure]

    timed = [(s, lat) for s in steps if (lat := summary(s)) is not None]
    if not timed:
        return None
    if stat == "max":
        return max(lat.max for _, lat in timed) / 1000.0
    if stat == "min":
        return min(lat.min for _, lat in timed) / 1000.0
    hists = [s.hdr(figure) for s, _ in timed]
    if stat == "mean":
        counts = [h.get_total_count() for h in hists]
        n = sum(counts)
        return (
            sum(lat.mean * c for (_, lat), c in zip(timed, counts, strict=True)) / n / 1000.0 if n else None
        )
    hist = new_hdr()
    for h in hists:
        hist.add(h)
    if hist.get_total_count() == 0:
        return None
    value_us = float(hist.get_value_at_percentile(_PERCENTILE[stat]))
    exact_max_s = max(lat.max for _, lat in timed) / 1000.0
    return min(value_us / 1e6, exact_max_s)


def _summary_s(summary: Mapping[str, float] | None, stat: str) -> float | None:
    """A latency stat in seconds from percentiles in milliseconds (``settings.load.lag_ms``)."""
    if not summary or summary.get(stat) is None:
        return None
    return float(summary[stat]) / 1000.0


def _per_s(n: float, result: RunResult) -> float | None:
    return n / result.duration_s if result.duration_s > 0 else None


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _no_data_reason(threshold: Threshold, result: RunResult) -> str:
    subject = threshold.subject
    if subject in RUN_SUBJECTS:
        if subject in ("errors", "checks"):
            return "no data: no operation ended"
        if subject == "iterations":
            return "no data: no iteration completed"
        if subject in ("plan", "schedule_lag", "generator", "loop_lag"):
            load = result.settings.load
            open_only = subject == "schedule_lag" or threshold.stat == "dropped"
            if load is None:
                return f"no data: '{subject}' is measured in load runs only"
            if open_only and load.model != "open":
                return f"no data: '{subject}.{threshold.stat}' is measured in open-model runs only"
            return f"no data: the run was too short to measure '{subject}' (it is judged over whole seconds)"
        return "no data: nothing measured"
    steps = _steps_of(subject, result)
    pending = sum(s.pending for s in steps)
    if not steps:
        return f"no data: '{subject}' never ran"
    if threshold.stat.startswith("received") and not any(s.kind == "receive" for s in steps):
        return f"no data: '{subject}' is no receive step (only a receive counts received messages)"
    if pending and not sum(s.count for s in steps):
        return f"no data: '{subject}' never ended ({pending} still waiting when the run ended)"
    if not sum(s.count for s in steps):
        return f"no data: '{subject}' never ran"
    return f"no data: '{subject}' has no {threshold.stat} samples"


def _run_wide(stat: str, subject: str, result: RunResult) -> float | None:
    ops = [s for s in result.steps if s.can_fail]
    executions = sum(s.count for s in ops)
    failed = sum(s.failures for s in ops)
    load = result.settings.load
    it = result.iterations
    if subject == "errors":
        return {
            "count": float(failed),
            "rate": _ratio(failed, executions),
            "per_s": _per_s(failed, result),
        }.get(stat)
    if subject == "checks":
        passed = sum(s.ok for s in ops)
        return {"count": float(passed), "rate": _ratio(passed, executions)}.get(stat)
    if subject == "messages":
        moved = sum(s.messages for s in result.steps)
        return {"count": float(moved), "per_s": _per_s(moved, result)}.get(stat)
    if subject == "iterations":
        if stat in _LATENCY_STATS:
            return _summary_s(load.iteration_ms if load is not None else None, stat)
        if stat == "dropped":
            return float(load.dropped) if load is not None else 0.0
        return {
            "count": float(it.ended),
            "completed": float(it.completed),
            "failed": float(it.failed),
            "interrupted": float(it.interrupted),
            "failure_rate": _ratio(it.failed, it.ended),
            "per_s": _per_s(it.ended, result),
        }.get(stat)
    if subject == "schedule_lag":
        return _summary_s(load.lag_ms, stat) if load is not None and load.model == "open" else None
    plan = load.plan if load is not None else None
    if subject == "plan":
        value = {"delivered": plan.delivered, "dropped": plan.dropped}.get(stat) if plan else None
        return float(value) if value is not None else None
    generator = load.generator if load is not None else None
    if subject == "loop_lag":
        return _summary_s(generator.loop_lag_ms if generator else None, stat)
    if subject == "generator" and generator is not None:
        value = {"cpu": generator.cpu_max, "saturated": generator.saturated_share}[stat]
        return float(value) if value is not None else None
    return None


def observed(threshold: Threshold, result: RunResult) -> float | None:
    """The value a threshold looks at, in its base unit; ``None`` when nothing was measured."""
    stat, subject = threshold.stat, threshold.subject
    steps = _steps_of(subject, result)
    if not steps and subject in RUN_SUBJECTS:
        return _run_wide(stat, subject, result)
    if not steps:
        return None
    if stat in _LATENCY_STATS:
        return _step_latency(stat, steps)
    if stat.startswith(("response_", "delivery_")):
        figure, _, latency_stat = stat.partition("_")
        return _step_latency(latency_stat, steps, figure)
    if stat.startswith("reach_"):
        return _reach(stat, steps)
    if stat in ("received", "received_per_s"):
        receives = [s for s in steps if s.kind == "receive"]
        if not receives:
            return None
        got = sum(s.received for s in receives)
        return float(got) if stat == "received" else _per_s(got, result)
    count = sum(s.count for s in steps)
    failures = sum(s.failures for s in steps)
    return {
        "count": float(count),
        "failures": float(failures),
        "failure_rate": _ratio(failures, count),
        "per_s": _per_s(count, result),
        "pending": float(sum(s.pending for s in steps)),
    }.get(stat)


def _unit_of(threshold: Threshold) -> Unit:
    table = _STATS.get(threshold.subject) if threshold.subject in RUN_SUBJECTS else _STATS["STEP"]
    metric = (table or {}).get(threshold.stat)
    return metric.unit if metric is not None else "count"


def _fmt(unit: Unit, value: float) -> str:
    if unit == "duration":
        return f"{value * 1000:.3f}ms"
    if unit == "fraction":
        return f"{value * 100:.3g}%"
    if unit == "per_s":
        return f"{value:.3g}/s"
    return f"{value:g}"


def _waited_beyond(th: Threshold, result: RunResult) -> tuple[int, float] | None:
    """An upper bound on a step's latency (``read.p99 < 100ms``) that its executions still
    waiting at the end have already passed: how many wait and the longest wait, in seconds. The
    figure covers only the executions that ended; one that has waited longer than the bound
    when the run ended would have taken longer still, so the bound is not met whatever the
    percentile says (a hung server must not pass a latency threshold)."""
    if th.op not in ("<", "<=") or not (th.stat in _LATENCY_STATS or th.stat.startswith("response_")):
        return None
    steps = _steps_of(th.subject, result)
    pending = sum(s.pending for s in steps)
    longest = max((s.pending_max_ms for s in steps if s.pending), default=0.0) / 1000.0
    if pending and not OPS[th.op](longest, th.value):
        return pending, longest
    return None


def evaluate(thresholds: Sequence[Threshold], result: RunResult) -> tuple[ThresholdResult, ...]:
    """Each threshold with its observed value and verdict. No data loses the threshold, saying
    why, unless it accepts no data (``accept_no_data``)."""
    out = []
    for th in thresholds:
        value = observed(th, result)
        unit = _unit_of(th)
        if value is None:
            reason = _no_data_reason(th, result)
            if th.accept_no_data:
                reason += " (accepted: the threshold allows no data)"
            out.append(
                ThresholdResult(
                    th.expression,
                    None,
                    th.accept_no_data,
                    th.location.line,
                    th.value,
                    reason,
                    th.default,
                    th.location.file,
                )
            )
            continue
        passed = OPS[th.op](value, th.value)
        waited = _waited_beyond(th, result)
        if passed and waited:
            passed = False
            message = (
                f"{_fmt(unit, value)} {th.op} {_fmt(unit, th.value)} over the executions that ended, but "
                f"{waited[0]} still waiting when the run ended had waited up to {_fmt(unit, waited[1])}: "
                "the figure leaves them out"
            )
        elif passed:
            message = f"{_fmt(unit, value)} {th.op} {_fmt(unit, th.value)}"
        else:
            message = (
                f"{th.subject}.{th.stat} was {_fmt(unit, value)}, "
                f"limit {th.op} {_fmt(unit, th.value)} "
                f"(off by {_fmt(unit, abs(value - th.value))})"
            )
        out.append(
            ThresholdResult(
                th.expression,
                value,
                passed,
                th.location.line,
                th.value,
                message,
                th.default,
                th.location.file,
            )
        )
    return tuple(out)
