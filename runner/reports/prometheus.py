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
from runner.results import RunResult

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


class _Results(Collector):
    """Yields the metric families of the given results on every collect."""

    def __init__(self, results: Sequence[RunResult], masker: Masker | None) -> None:
        self._results = tuple(results)
        self._text = masker.text if masker is not None else (lambda s: s)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        t = self._text

        def gauge(name: str, doc: str, labels: Sequence[str], unit: str = "") -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=list(labels), unit=unit)

        success = gauge(
            "wsload_scenario_success", "1 if the scenario's last run passed, else 0.", ["scenario"]
        )
        code = gauge("wsload_scenario_exit_code", "Exit code of the scenario's last run.", ["scenario"])
        duration = gauge("wsload_scenario_duration_seconds", "Duration of the last run.", ["scenario"])
        last = gauge(
            "wsload_scenario_last_run_timestamp_seconds", "Unix time the last run ended.", ["scenario"]
        )
        iterations = gauge("wsload_scenario_iterations", "Scenario iterations in the last run.", ["scenario"])
        threshold = gauge(
            "wsload_threshold_success", "1 if the threshold held in the last run.", ["scenario", "threshold"]
        )
        step_ok = gauge(
            "wsload_step_success",
            "1 if no execution of the step failed in the last run.",
            ["scenario", "step"],
        )
        runs = gauge(
            "wsload_step_executions", "Executions of the step in the last run.", ["scenario", "step"]
        )
        fails = gauge(
            "wsload_step_failures", "Failed executions of the step in the last run.", ["scenario", "step"]
        )
        rcs = gauge(
            "wsload_step_return_codes",
            "Executions by non-success return code in the last run.",
            ["scenario", "step", "rc"],
        )
        latency = gauge(
            "wsload_step_latency_seconds",
            "Step latency quantiles of the last run (1 = max).",
            ["scenario", "step", "quantile"],
        )
        names = _unique([t(r.scenario_name) for r in self._results])
        for scenario, r in zip(names, self._results, strict=True):
            success.add_metric([scenario], 1.0 if r.passed else 0.0)
            code.add_metric([scenario], float(r.exit_code))
            duration.add_metric([scenario], r.duration_s)
            last.add_metric([scenario], _finished_at(r))
            iterations.add_metric([scenario], float(r.iterations))
            for expr, th in zip(_unique([t(x.expression) for x in r.thresholds]), r.thresholds, strict=True):
                threshold.add_metric([scenario, expr], 1.0 if th.passed else 0.0)
            for step, s in zip(_unique([t(s.name) for s in r.steps]), r.steps, strict=True):
                step_ok.add_metric([scenario, step], 0.0 if s.failures else 1.0)
                runs.add_metric([scenario, step], float(s.count))
                fails.add_metric([scenario, step], float(s.failures))
                standard = () if s.kind == "sleep" else _STANDARD_RC
                for rc in sorted({*standard, *s.rc}, key=lambda c: int(c) if c.lstrip("-").isdigit() else 0):
                    rcs.add_metric([scenario, step, rc], float(s.rc.get(rc, 0)))
                if s.latency_ms is not None:
                    for q, key in QUANTILES:
                        latency.add_metric([scenario, step, q], getattr(s.latency_ms, key) / 1000.0)
        yield from (success, code, duration, last, iterations, threshold, step_ok, runs, fails, rcs, latency)


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
