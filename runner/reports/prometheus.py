"""Prometheus metrics of finished runs, for node_exporter's textfile collector or a Pushgateway.

Built with the official ``prometheus_client`` from a collector that is a pure function of the
results, so each write or push carries exactly the last round, nothing left over from before.
Every metric is a gauge (a run's figures are a snapshot, not a counter that only grows), labelled
only by ``scenario``, ``step``, ``rc``, ``quantile`` or ``threshold``: all fixed by the scenario
file, so the number of series stays small however often the check runs. An alert rule can use e.g.
``wsload_scenario_success == 0`` or ``time() - wsload_scenario_last_run_timestamp_seconds > 900``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway, write_to_textfile
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runner.errors import ReportWriteError
from runner.reports.masking import Masker
from runner.results.result import RunResult, StepResult

__all__ = ["JOB", "QUANTILES", "push", "registry", "render", "write_textfile"]

#: The Pushgateway job name.
JOB = "wsload"
#: quantile label -> LatencySummary field; 1 is the maximum.
QUANTILES = (
    ("0.5", "p50"),
    ("0.9", "p90"),
    ("0.95", "p95"),
    ("0.99", "p99"),
    ("0.999", "p999"),
    ("1", "max"),
)
#: Return codes always exported (0 when absent), so an alert on them has a series to look at.
_STANDARD_RC = ("-2", "-1", "1")


def _unique(names: Sequence[str]) -> list[str]:
    """Label values made unique (a repeated name gets `` #2``), so no two samples collide."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0) + 1
        seen[name] = n
        out.append(name if n == 1 else f"{name} #{n}")
    return out


def _finished_at(result: RunResult) -> float:
    """Unix time the run ended: its start plus its duration."""
    try:
        started = datetime.fromisoformat(result.started_at).timestamp()
    except ValueError:
        return 0.0
    return started + result.duration_s


def _clean(value: float) -> float:
    """A value without binary float noise (1.234 ms is 0.001234 s, not 0.0012339999999999999):
    the report's figures have at most microsecond resolution."""
    return round(float(value), 9)


class _Results(Collector):
    """Yields the metric families of the given results on every collect."""

    def __init__(self, results: Sequence[RunResult], masker: Masker | None) -> None:
        self._results = tuple(results)
        self._text = masker.text if masker is not None else (lambda s: s)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            name: GaugeMetricFamily(name, doc, labels=list(labels)) for name, doc, labels in _FAMILIES
        }
        t = self._text
        for scenario, r in zip(
            _unique([t(r.scenario_name) for r in self._results]), self._results, strict=True
        ):
            _scenario_metrics(families, scenario, r)
            _generator_metrics(families, scenario, r)
            for expr, th in zip(_unique([t(x.expression) for x in r.thresholds]), r.thresholds, strict=True):
                families["wsload_threshold_success"].add_metric([scenario, expr], 1.0 if th.passed else 0.0)
            for step, s in zip(_unique([t(s.name) for s in r.steps]), r.steps, strict=True):
                _step_metrics(families, scenario, step, s)
        yield from families.values()


#: Every metric family: name, help text, labels (in the order they are written).
_FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("wsload_scenario_success", "1 if the scenario's last run passed, else 0.", ("scenario",)),
    ("wsload_scenario_exit_code", "Exit code of the scenario's last run.", ("scenario",)),
    ("wsload_scenario_duration_seconds", "Duration of the last run.", ("scenario",)),
    ("wsload_scenario_last_run_timestamp_seconds", "Unix time the last run ended.", ("scenario",)),
    (
        "wsload_scenario_iterations",
        "Iterations of the last run by outcome: completed (every step passed), failed (ended at a "
        "failed step), interrupted (cut by the end of the run or a signal).",
        ("scenario", "outcome"),
    ),
    (
        "wsload_scenario_problems",
        "Problems that fail the run whatever its thresholds say (internal errors, steps that "
        "never completed, no iteration completed, a plan not delivered).",
        ("scenario",),
    ),
    (
        "wsload_plan_delivered_ratio",
        "Load runs: the share of the plan delivered (open model: starts made / due; closed: users).",
        ("scenario",),
    ),
    (
        "wsload_generator_cpu_ratio",
        "Load runs: the highest CPU share of one core a worker used in one second.",
        ("scenario", "worker"),
    ),
    (
        "wsload_generator_loop_lag_seconds",
        "Load runs: the worker's event-loop lag quantiles (1 = max).",
        ("scenario", "worker", "quantile"),
    ),
    (
        "wsload_generator_saturated_seconds",
        "Load runs: seconds in which the worker was saturated (CPU or loop lag over its bound).",
        ("scenario", "worker"),
    ),
    ("wsload_threshold_success", "1 if the threshold held in the last run.", ("scenario", "threshold")),
    ("wsload_step_success", "1 if no execution of the step failed in the last run.", ("scenario", "step")),
    ("wsload_step_executions", "Executions of the step in the last run.", ("scenario", "step")),
    ("wsload_step_failures", "Failed executions of the step in the last run.", ("scenario", "step")),
    (
        "wsload_step_pending",
        "Executions of the step still in flight when the last run ended.",
        ("scenario", "step"),
    ),
    (
        "wsload_step_received_messages",
        "Receive steps: messages taken in the last run (matched and passed their checks).",
        ("scenario", "step"),
    ),
    (
        "wsload_step_internal_errors",
        "Executions of the step that raised inside wsload (a bug; fails the run).",
        ("scenario", "step"),
    ),
    (
        "wsload_step_return_codes",
        "Executions by non-success return code in the last run.",
        ("scenario", "step", "rc"),
    ),
    (
        "wsload_step_latency_seconds",
        "Step latency quantiles of the last run (1 = max).",
        ("scenario", "step", "quantile"),
    ),
    (
        "wsload_step_response_seconds",
        "Reads: response time quantiles of the last run, from the asking write step's start (1 = max).",
        ("scenario", "step", "quantile"),
    ),
    (
        "wsload_step_delivery_seconds",
        "Reads with latency_from: delivery latency quantiles, from the message's send stamp (1 = max).",
        ("scenario", "step", "quantile"),
    ),
    (
        "wsload_step_reach_receivers",
        "Reads with latency_from.id: reads that received one message, fewest/median/most over the messages.",
        ("scenario", "step", "stat"),
    ),
    (
        "wsload_step_reach_seconds",
        "Reads with latency_from.id: per message, the time until its last reader got it (1 = max).",
        ("scenario", "step", "quantile"),
    ),
)


def _scenario_metrics(f: dict[str, GaugeMetricFamily], scenario: str, r: RunResult) -> None:
    f["wsload_scenario_success"].add_metric([scenario], 1.0 if r.passed else 0.0)
    f["wsload_scenario_exit_code"].add_metric([scenario], float(r.exit_code))
    f["wsload_scenario_duration_seconds"].add_metric([scenario], _clean(r.duration_s))
    f["wsload_scenario_last_run_timestamp_seconds"].add_metric([scenario], round(_finished_at(r), 3))
    it = r.iterations
    for outcome, n in (("completed", it.completed), ("failed", it.failed), ("interrupted", it.interrupted)):
        f["wsload_scenario_iterations"].add_metric([scenario, outcome], float(n))
    f["wsload_scenario_problems"].add_metric([scenario], float(len(r.problems)))


def _generator_metrics(f: dict[str, GaugeMetricFamily], scenario: str, r: RunResult) -> None:
    load = r.settings.load
    if load is None:
        return
    if load.plan is not None and load.plan.delivered is not None:
        f["wsload_plan_delivered_ratio"].add_metric([scenario], _clean(load.plan.delivered))
    for w in load.generator.workers if load.generator is not None else ():
        worker = str(w.name)
        f["wsload_generator_cpu_ratio"].add_metric([scenario, worker], _clean(w.cpu_max))
        f["wsload_generator_saturated_seconds"].add_metric([scenario, worker], float(w.saturated_seconds))
        lag = w.loop_lag_ms or {}
        for q, key in QUANTILES:
            if lag.get(key) is not None:
                f["wsload_generator_loop_lag_seconds"].add_metric(
                    [scenario, worker, q], _clean(lag[key] / 1000.0)
                )


def _step_metrics(f: dict[str, GaugeMetricFamily], scenario: str, step: str, s: StepResult) -> None:
    f["wsload_step_success"].add_metric([scenario, step], 0.0 if s.failures else 1.0)
    f["wsload_step_executions"].add_metric([scenario, step], float(s.count))
    f["wsload_step_failures"].add_metric([scenario, step], float(s.failures))
    f["wsload_step_pending"].add_metric([scenario, step], float(s.pending))
    f["wsload_step_internal_errors"].add_metric([scenario, step], float(s.internal_errors))
    if s.kind == "receive":
        f["wsload_step_received_messages"].add_metric([scenario, step], float(s.received))
    standard = () if s.kind == "sleep" else _STANDARD_RC
    for rc in sorted({*standard, *s.rc}, key=lambda c: int(c) if c.lstrip("-").isdigit() else 0):
        f["wsload_step_return_codes"].add_metric([scenario, step, rc], float(s.rc.get(rc, 0)))
    for family, summary in (
        ("wsload_step_latency_seconds", s.latency_ms),
        ("wsload_step_response_seconds", s.response_ms),
        ("wsload_step_delivery_seconds", s.delivery_ms),
        ("wsload_step_reach_seconds", s.reach.time_ms if s.reach is not None else None),
    ):
        if summary is not None:
            for q, key in QUANTILES:
                f[family].add_metric([scenario, step, q], _clean(getattr(summary, key) / 1000.0))
    if s.reach is not None:
        for stat, value in (
            ("min", s.reach.receivers_min),
            ("median", s.reach.receivers_median),
            ("max", s.reach.receivers_max),
        ):
            f["wsload_step_reach_receivers"].add_metric([scenario, step, stat], float(value))


def registry(results: Sequence[RunResult], masker: Masker | None = None) -> CollectorRegistry:
    """A fresh registry holding only the metrics of ``results``."""
    reg = CollectorRegistry(auto_describe=True)
    reg.register(_Results(results, masker))
    return reg


def render(results: Sequence[RunResult], masker: Masker | None = None) -> str:
    """The metrics in Prometheus' text exposition format."""
    return generate_latest(registry(results, masker)).decode("utf-8")


def write_textfile(
    path: str | os.PathLike[str], results: Sequence[RunResult], masker: Masker | None = None
) -> None:
    """Write the metrics for node_exporter's textfile collector (the library writes, then renames)."""
    target = os.fspath(path)
    try:
        directory = os.path.dirname(os.path.abspath(target))
        os.makedirs(directory, exist_ok=True)
        write_to_textfile(target, registry(results, masker))
    except OSError as exc:
        raise ReportWriteError(target, exc.strerror or str(exc)) from exc


def push(
    url: str, results: Sequence[RunResult], masker: Masker | None = None, *, timeout_s: float = 10.0
) -> None:
    """Replace this job's metrics on a Pushgateway (HTTP PUT); ``ReportWriteError`` if it fails."""
    try:
        push_to_gateway(url, job=JOB, registry=registry(results, masker), timeout=timeout_s)
    except OSError as exc:  # URLError, HTTPError and socket errors are all OSErrors
        raise ReportWriteError(url, str(getattr(exc, "reason", None) or exc)) from exc
