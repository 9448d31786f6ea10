"""Once a second during a load run: gauges into the time series, a progress line, and the
``abort_on_fail`` thresholds evaluated on everything measured so far (all workers merged).

The same ``Monitor`` serves a single process (it reads the live recorder) and the parent of
workers (it reads the recorder their interval snapshots are merged into).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from runner.checks.thresholds import evaluate
from runner.load.driver import Gauges
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult, build_result
from runner.scenario.model import Scenario, Threshold

__all__ = ["LiveView", "Monitor", "Progress", "can_abort"]

#: Kinds whose passed executions each move a message (a ``receive`` counts its ``received``).
_MESSAGE_KINDS = ("read", "write")


class Progress:
    """Live progress on stderr: one refreshed line on a terminal, a plain line every
    ``every_s`` seconds otherwise (CI logs stay readable)."""

    def __init__(
        self, stream: TextIO | None = None, *, tty: bool | None = None, every_s: float = 5.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self._last = -1e9
        self._shown = False

    def update(
        self,
        elapsed_s: float,
        vus: int,
        conns: int,
        msgs_per_s: int,
        errors: int,
        p99_ms: float | None,
        *,
        health: tuple[float, int, bool] | None = None,
    ) -> None:
        """One progress line; ``health`` is the generator's (busiest worker's CPU share, largest
        loop lag in ns, saturated) of the latest second."""
        p99 = f"{p99_ms:.2f}ms" if p99_ms is not None else "-"
        line = (
            f"wsload: {elapsed_s:6.1f}s  vus {vus:,}  conns {conns:,}  msgs/s {msgs_per_s:,}  "
            f"errors {errors:,}  read p99 {p99}"
        )
        if health is not None:
            cpu, lag_ns, saturated = health
            line += f"  generator cpu {cpu:.0%} lag max {lag_ns / 1e6:.1f}ms"
            if saturated:
                line += " SATURATED"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._shown = True
        elif elapsed_s - self._last >= self.every_s:
            self.stream.write(line + "\n")
            self._last = elapsed_s
        else:
            return
        self.stream.flush()

    def done(self) -> None:
        """End the refreshed line so the report starts on its own line."""
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


class LiveView(Protocol):
    """Someone watching the run live (the dashboard, ``runner.dashboard``): told once a second,
    it takes the result so far (``snapshot()``, the same function the run's own result comes
    from) only when it has a watcher and the time to spare."""

    def second(self, snapshot: Callable[[], RunResult]) -> None: ...


def can_abort(threshold: Threshold) -> bool:
    """Whether failing now means the run is already lost: a count or rate that must still grow
    past its limit (``iterations.count > 1000``) is not lost before the end."""
    if not threshold.abort_on_fail:
        return False
    return not (threshold.stat in ("count", "rate") and threshold.op in (">", ">="))


class Monitor:
    """Called by whoever runs the load once a second (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        total: RunRecorder,
        *,
        progress: Progress | None,
        stop: Callable[[str], None],
        live: LiveView | None = None,
    ) -> None:
        self.scenario = scenario
        self.live = live
        #: The result so far, set by whoever runs the load (what the live view shows).
        self.snapshot: Callable[[], RunResult] | None = None
        self.total = total
        self.progress = progress
        self.stop = stop
        self.abort_thresholds = tuple(t for t in scenario.thresholds if can_abort(t))
        #: A plan's populations: (name, its own abort_on_fail thresholds), judged on its recorder.
        self.population_aborts = tuple(
            (p.name, tuple(t for t in p.thresholds if can_abort(t))) for p in scenario.populations
        )
        self.populations = tuple(p.name for p in scenario.populations)
        self.aborted = ""
        self.max_vus = 0
        self.max_connections = 0
        self._messages = 0  # messages recorded so far, at ``_messages_ns``: the progress rate
        self._messages_ns = total.start_ns

    def tick(self, gauges: Gauges) -> None:
        total = self.total
        vus, conns = gauges.vus, gauges.connections
        now = time.monotonic_ns()
        second = total.second(now)
        total.timeseries.gauges(second, vus, conns, gauges.paused)
        for name, (p_vus, p_conns, p_paused) in zip(self.populations, gauges.populations, strict=False):
            total.population(name).timeseries.gauges(second, p_vus, p_conns, p_paused)
        self.max_vus = max(self.max_vus, vus)
        self.max_connections = max(self.max_connections, conns)
        if self.progress is not None:
            # The rate since the last tick from the totals, not the last second's bucket: workers'
            # deltas arrive late on a busy machine, and a second not yet merged showed 0 msgs/s.
            every = total.every()
            messages = sum(
                rec.ok if rec.kind in _MESSAGE_KINDS else rec.received
                for each in every
                for rec in each.steps.values()
            )
            elapsed_ns = now - self._messages_ns
            msgs = round((messages - self._messages) * 1e9 / elapsed_ns) if elapsed_ns > 0 else 0
            self._messages, self._messages_ns = messages, now
            errors = sum(rec.failures for each in every for rec in each.steps.values())
            p99 = None
            for back in (1, 2, 3):  # the latest second whose reads have arrived
                found = [
                    x
                    for each in every
                    if (x := each.timeseries.latest_read_p99_ms(second - back)) is not None
                ]
                p99 = max(found) if found else None  # a plan: the slowest population's
                if p99 is not None:
                    break
            health = None
            for back in (1, 2, 3):  # likewise the generator's latest health sample
                health = total.health.latest(second - back)
                if health is not None:
                    break
            self.progress.update(
                (now - total.start_ns) / 1e9, vus, conns, max(msgs, 0), errors, p99, health=health
            )
        if not self.aborted and (self.abort_thresholds or any(t for _, t in self.population_aborts)):
            self.check_abort((now - total.start_ns) / 1e9)
        if self.live is not None and self.snapshot is not None:
            self.live.second(self.snapshot)

    def check_abort(self, elapsed_s: float) -> None:
        """Stop the run when an ``abort_on_fail`` threshold is lost on the data so far (a plan's
        own on all its populations together, a population's on that population)."""
        checks: list[tuple[str, tuple[Threshold, ...], RunRecorder]] = []
        if self.abort_thresholds:
            whole = self.total
            if self.populations:
                from runner.load.populations import flatten  # a plan's run-wide figures

                whole = flatten(self.total)
            checks.append(("", self.abort_thresholds, whole))
        for name, thresholds in self.population_aborts:
            if thresholds:
                checks.append((f"{name}/", thresholds, self.total.population(name)))
        for label, thresholds, recorder in checks:
            result = build_result(
                recorder,
                scenario_name=self.scenario.name,
                scenario_file=self.scenario.file,
                started_at="",
                duration_s=max(elapsed_s, 1e-9),
                target="",
            )
            for verdict in evaluate(thresholds, result):
                if not verdict.passed and verdict.value is not None:
                    self.aborted = (
                        f"aborted after {elapsed_s:.1f}s: abort_on_fail threshold "
                        f"'{label}{verdict.expression}' lost ({verdict.message})"
                    )
                    self.stop(self.aborted)
                    return

    def done(self) -> None:
        if self.progress is not None:
            self.progress.done()
