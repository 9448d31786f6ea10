"""Thresholds evaluated purely from a finished ``RunResult``.

Subjects: a step name, a step kind (all steps of that kind, histograms merged), or one of
``errors`` / ``iterations`` / ``checks``. Stats and their base units:

=============  ==========================================================================
p50..p999      latency percentile in seconds (merged HDR histograms)
max, mean, min exact latency max / mean / min in seconds
count          executions (steps), failed executions (errors), iterations, passed checks
rate           steps, iterations: per second over the run; errors: failed fraction of all
               executions; checks: passed fraction
error_rate     failed fraction of the subject's executions
=============  ==========================================================================
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from runner.metrics import new_hdr
from runner.model import Threshold
from runner.results import RunResult, StepResult, ThresholdResult

__all__ = ["OPS", "evaluate", "observed"]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_PERCENTILE = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
_SPECIAL = ("errors", "iterations", "checks")


def _steps_of(subject: str, result: RunResult) -> list[StepResult]:
    named = [s for s in result.steps if s.name == subject]
    if named:
        return named
    return [s for s in result.steps if s.kind == subject]


def _latency(stat: str, steps: Sequence[StepResult]) -> float | None:
    timed = [s for s in steps if s.latency_ms is not None]
    if not timed:
        return None
    if stat == "max":
        return max(s.latency_ms.max for s in timed if s.latency_ms) / 1000.0
    if stat == "min":
        return min(s.latency_ms.min for s in timed if s.latency_ms) / 1000.0
    if stat == "mean":
        total = 0.0
        n = 0
        for s in timed:
            c = s.hdr().get_total_count() if s.histogram else s.count
            total += s.latency_ms.mean * c if s.latency_ms else 0.0
            n += c
        return total / n / 1000.0 if n else None
    hist = new_hdr()
    for s in timed:
        if s.histogram:
            hist.add(s.hdr())
    if hist.get_total_count() == 0:
        return None
    value_us = float(hist.get_value_at_percentile(_PERCENTILE[stat]))
    exact_max_s = max(s.latency_ms.max for s in timed if s.latency_ms) / 1000.0
    return min(value_us / 1e6, exact_max_s)


def observed(threshold: Threshold, result: RunResult) -> float | None:
    """The value a threshold looks at, in its base unit; ``None`` when nothing was measured."""
    stat, subject = threshold.stat, threshold.subject
    duration = result.duration_s if result.duration_s > 0 else None
    steps = _steps_of(subject, result)
    if not steps and subject in _SPECIAL:
        executions = sum(s.count for s in result.steps)
        failed = sum(s.failures for s in result.steps)
        if subject == "errors":
            if stat == "count":
                return float(failed)
            if stat in ("rate", "error_rate"):
                return failed / executions if executions else 0.0
        elif subject == "iterations":
            if stat == "count":
                return float(result.iterations)
            if stat == "rate":
                return result.iterations / duration if duration else None
            if stat == "error_rate":
                return result.iterations_failed / result.iterations if result.iterations else 0.0
        elif subject == "checks":
            passed = sum(s.ok for s in result.steps)
            if stat == "count":
                return float(passed)
            if stat == "rate":
                return passed / executions if executions else None
            if stat == "error_rate":
                return failed / executions if executions else 0.0
        return None
    if not steps:
        return None
    if stat in _PERCENTILE or stat in ("max", "mean", "min"):
        return _latency(stat, steps)
    count = sum(s.count for s in steps)
    if stat == "count":
        return float(count)
    if stat == "rate":
        return count / duration if duration else None
    if stat == "error_rate":
        return sum(s.failures for s in steps) / count if count else 0.0
    if stat == "failures":
        return float(sum(s.failures for s in steps))
    return None


def _fmt(subject: str, stat: str, value: float) -> str:
    if stat in _PERCENTILE or stat in ("max", "mean", "min"):
        return f"{value * 1000:.3f}ms"
    if stat == "error_rate" or (stat == "rate" and subject in ("errors", "checks")):
        return f"{value * 100:.3g}%"
    if stat == "rate":
        return f"{value:.3g}/s"
    return f"{value:g}"


def evaluate(thresholds: Sequence[Threshold], result: RunResult) -> tuple[ThresholdResult, ...]:
    """Each threshold with its observed value and verdict; no data means the threshold is lost."""
    out = []
    for th in thresholds:
        value = observed(th, result)
        if value is None:
            out.append(
                ThresholdResult(th.expression, None, False, th.location.line, th.value, "no data measured")
            )
            continue
        passed = OPS[th.op](value, th.value)
        if passed:
            message = f"{_fmt(th.subject, th.stat, value)} {th.op} {_fmt(th.subject, th.stat, th.value)}"
        else:
            message = (
                f"{th.subject}.{th.stat} was {_fmt(th.subject, th.stat, value)}, "
                f"limit {th.op} {_fmt(th.subject, th.stat, th.value)} "
                f"(off by {_fmt(th.subject, th.stat, abs(value - th.value))})"
            )
        out.append(ThresholdResult(th.expression, value, passed, th.location.line, th.value, message))
    return tuple(out)
