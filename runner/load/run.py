"""``run_load``: a load run in this process, or spread over worker processes.

Single process: the live recorder *is* the total; a ticker calls the ``Monitor`` once a second
(aligned to the run's seconds). With workers the parent only coordinates (``runner.load.workers``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from runner.engine.check import tls_info
from runner.engine.embedded import is_embedded, resolved_target
from runner.engine.vu import RunContext
from runner.load.driver import ShardDriver
from runner.load.limits import LimitPlan, loopback_sources, plan_limits
from runner.load.monitor import LiveView, Monitor, Progress
from runner.load.populations import contexts, plan_result, plan_tls
from runner.load.result import load_result
from runner.load.settings import LoadOverrides, apply_overrides
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult
from runner.runtime import on_stop_signals, quiet_gc, utc_now_iso
from runner.scenario.model import Scenario

if TYPE_CHECKING:
    from runner.client import WebSocketClient

__all__ = ["prepare", "run_load"]

#: The first start is this far after setting up, so the first second is a full one.
START_DELAY_NS = 20_000_000


def prepare(
    scenario: Scenario, overrides: LoadOverrides | None, workers: int | None, target: str | None
) -> tuple[Scenario, LimitPlan]:
    """The scenario with overrides applied, and the limits plan (``RunError`` before any run)."""
    scenario = apply_overrides(scenario, overrides or LoadOverrides())
    assert scenario.load is not None
    if workers is None:
        workers = scenario.load.workers
    name = target or scenario.target
    limits = plan_limits(
        scenario,
        scenario.load,
        workers=workers,
        target=None if is_embedded(name) else name,
        embedded=is_embedded(name),
    )
    if is_embedded(name):  # the embedded server listens on 127.0.0.1: loopback
        limits = loopback_sources(limits)
    return scenario, limits


async def run_load(
    scenario: Scenario,
    *,
    target: str | None = None,
    overrides: LoadOverrides | None = None,
    workers: int | None = 1,
    progress: Progress | None = None,
    variables: Mapping[str, str] | None = None,
    handle_signals: bool = True,
    client_factory: Callable[[], WebSocketClient] | None = None,
    live: LiveView | None = None,
) -> RunResult:
    """Run ``scenario``'s load (see ``runner.load``); ``workers=None`` decides by the load's size."""
    scenario, limits = prepare(scenario, overrides, workers, target)
    # A watched run measures in a worker even when one process would do: building the live page
    # (10-50 ms a second with 50 steps) on the loop that measures showed as its latency max and
    # loop lag (a reader on the page raised the loop lag max from 7.5 to 51 ms); the parent only
    # coordinates, so it takes that work.
    if limits.workers > 1 or live is not None:
        from runner.load.workers import run_workers

        return await run_workers(
            scenario,
            limits,
            target=target,
            overrides=overrides or LoadOverrides(),
            variables=variables,
            progress=progress,
            handle_signals=handle_signals,
            live=live,
        )
    # The GC set-up first: a full collection of a big heap (a long-lived process, such as a test
    # run) that fell between fixing the start and the engine's own set-up held the first starts
    # back by half a second (schedule lag p99 0.49 s in a 3 s run at 100/s).
    with quiet_gc():
        return await _run_here(scenario, limits, target, progress, handle_signals, client_factory, live)


async def _run_here(
    scenario: Scenario,
    limits: LimitPlan,
    target: str | None,
    progress: Progress | None,
    handle_signals: bool,
    client_factory: Callable[[], WebSocketClient] | None,
    live: LiveView | None = None,
) -> RunResult:
    """The run in this process (``run_load`` without workers)."""
    started_at = utc_now_iso()
    interrupted = False
    async with resolved_target(target or scenario.target) as resolved:
        start_ns = time.monotonic_ns() + START_DELAY_NS
        recorder = RunRecorder(start_ns)
        ctx = RunContext(scenario, recorder, resolved.url, resolved.ca_pem)
        populations = contexts(scenario, recorder, resolved.url, resolved.ca_pem)
        monitor = Monitor(
            scenario, recorder, progress=progress, stop=lambda reason: driver.stop(reason), live=live
        )
        driver = ShardDriver(
            ctx,
            start_ns=start_ns,
            on_second=monitor.tick,
            source_addresses=limits.source_addresses,
            client_factory=client_factory,
            populations=populations,
        )

        def result_now() -> RunResult:
            """The result of what was measured so far: the run's own at its end, and the live
            view's each second (one function, so what the dashboard shows is the report)."""
            duration_s = max((time.monotonic_ns() - start_ns) / 1e9, 0.0)
            stopped_at_s = None if driver.stopped_at_ns is None else (driver.stopped_at_ns - start_ns) / 1e9
            if populations:
                return plan_result(
                    scenario,
                    recorder,
                    started_at=started_at,
                    duration_s=duration_s,
                    target=resolved.label,
                    limits=limits,
                    max_connections=monitor.max_connections,
                    interrupted=interrupted,
                    stop_reason=driver.stop_reason,
                    stopped_at_s=stopped_at_s,
                    tls=plan_tls(populations),
                    own_stops={n: (r, (at - start_ns) / 1e9) for n, (r, at) in driver.own_stops().items()},
                    max_active=driver.max_active_each(),
                )
            return load_result(
                scenario,
                recorder,
                started_at=started_at,
                duration_s=duration_s,
                target=resolved.label,
                limits=limits,
                max_vus=max(monitor.max_vus, driver.engine.max_active),
                max_connections=monitor.max_connections,
                interrupted=interrupted,
                stop_reason=driver.stop_reason,
                stopped_at_s=stopped_at_s,
                tls=tls_info(scenario, ctx),
            )

        monitor.snapshot = result_now

        def on_signal(signum: int) -> None:
            nonlocal interrupted
            interrupted = True
            driver.stop(f"interrupted by signal {signum}")

        guard = on_stop_signals(on_signal) if handle_signals else contextlib.nullcontext()
        try:
            with guard:
                await driver.run()
        finally:
            monitor.done()
        return result_now()
