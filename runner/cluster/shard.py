"""One shard of a load plan in this process: ``wsload run FILE --shard K/N``, and what each Dask
worker runs for ``--cluster``.

The same engine as a local run (``LoadEngine`` with ``shard=K-1, shards=N``: VUs split with
``shard_count``, open-model starts interleaved with ``shard_starts``, total iterations with them),
started at a shared *wall-clock* instant: machines do not share a monotonic clock, so each shard
turns ``start_unix_ns`` into its own monotonic start. Once a second the recorder's interval
(``take_interval``) is added to this shard's total and, for Dask, handed to ``on_tick`` to stream
back; the report carries the total recorder in ``settings.shard`` so ``wsload merge`` is exact.

A shard runs in one process (one event loop): for more cores, use more shards (N = machines x
cores); shards compose exactly, sub-shards of a shard would not.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from runner.engine.check import tls_info
from runner.engine.embedded import is_embedded, resolved_target
from runner.engine.vu import RunContext
from runner.errors import UsageError
from runner.load.driver import Gauges, ShardDriver
from runner.load.limits import LimitPlan, default_max_vus, loopback_sources, plan_limits
from runner.load.merge import shard_info
from runner.load.monitor import LiveView, Monitor, Progress
from runner.load.populations import bare, contexts, plan_result, plan_tls, shard_populations
from runner.load.result import load_result
from runner.load.settings import LoadOverrides, apply_overrides
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult
from runner.runtime import on_stop_signals
from runner.scenario.model import LoadSpec, Scenario, Stage
from runner.scenario.plan import shard_count

__all__ = ["START_MARGIN_S", "parse_shard_arg", "parse_start_at", "run_shard", "shard_share"]

#: Without ``--start-at`` the plan starts this long after the shard is ready.
START_MARGIN_S = 0.05

#: Called once a second with (interval delta, active VUs, connections); for streaming progress.
TickSink = Callable[[dict[str, Any], int, int], None]


def parse_shard_arg(text: str) -> tuple[int, int]:
    """``K/N`` (1-based K) -> (K, N); ``UsageError`` otherwise."""
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise UsageError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/8")
    return index, count


def parse_start_at(text: str) -> int:
    """``--start-at`` (ISO 8601, UTC when no offset is given) -> Unix nanoseconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--start-at {text!r}: expected an ISO 8601 time, e.g. 2026-11-25T21:30:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def shard_share(load: LoadSpec, index: int, count: int) -> LoadSpec:
    """The part of ``load`` one shard holds at most, for the limits check (not what it runs:
    the engine takes its share of the full plan itself)."""
    k = index - 1
    if load.model == "open":
        cap = load.max_vus if load.max_vus is not None else default_max_vus(load)
        return replace(
            load,
            rate=None if load.rate is None else load.rate / count,
            stages=tuple(Stage(s.duration_s, s.target / count) for s in load.stages),
            max_vus=max(1, shard_count(cap, k, count)),
        )
    return replace(
        load,
        vus=max(1, shard_count(load.vus, k, count)),
        stages=tuple(Stage(s.duration_s, float(shard_count(round(s.target), k, count))) for s in load.stages),
    )


def _limits(scenario: Scenario, index: int, count: int, target: str | None) -> LimitPlan:
    assert scenario.load is not None
    name = target or scenario.target
    limits = plan_limits(
        scenario,
        shard_share(scenario.load, index, count),
        workers=1,
        target=None if is_embedded(name) else name,
        embedded=is_embedded(name),
    )
    if is_embedded(name):
        limits = loopback_sources(limits)
    return limits


async def run_shard(
    scenario: Scenario,
    *,
    index: int,
    count: int,
    target: str | None = None,
    overrides: LoadOverrides | None = None,
    start_unix_ns: int | None = None,
    progress: Progress | None = None,
    handle_signals: bool = True,
    on_tick: TickSink | None = None,
    should_stop: Callable[[], str] | None = None,
    live: LiveView | None = None,
) -> RunResult:
    """Run shard ``index`` (1-based) of ``count`` of ``scenario``'s load; the report is marked as
    a shard (``settings.shard``). ``should_stop()`` is polled once a second: a non-empty reason
    stops the shard gracefully (how a Dask client stops every shard together)."""
    scenario = apply_overrides(scenario, overrides or LoadOverrides())
    assert scenario.load is not None
    limits = _limits(scenario, index, count, target)
    async with resolved_target(target or scenario.target) as resolved:
        start_unix_ns, start_ns = _shared_start(start_unix_ns, f"{index}/{count}")
        ctx = RunContext(scenario, RunRecorder(start_ns), resolved.url, resolved.ca_pem)
        shard_run = _ShardRun(ctx, limits, index, count, start_ns, progress, on_tick, should_stop, live)
        shard_run.monitor.snapshot = lambda: shard_run.result(start_unix_ns, resolved.label)
        await shard_run.run(start_unix_ns, handle_signals)
        result = shard_run.result(start_unix_ns, resolved.label)
    shard = shard_info(
        scenario, index=index, count=count, start_unix_ns=start_unix_ns, recorder=bare(shard_run.total)
    )
    return replace(result, settings=replace(result.settings, shard=shard))


def _shared_start(start_unix_ns: int | None, shard: str) -> tuple[int, int]:
    """The shared wall-clock start (now + a margin without ``--start-at``) and its monotonic
    time in this process; a shard that starts late says so and catches up with the plan."""
    now_unix, now_mono = time.time_ns(), time.monotonic_ns()
    if start_unix_ns is None:
        start_unix_ns = now_unix + int(START_MARGIN_S * 1e9)
    late_s = (now_unix - start_unix_ns) / 1e9
    if late_s > 1.0:
        print(
            f"wsload: shard {shard} starts {late_s:.1f}s after the shared start time; "
            "it follows the shared plan clock (what was due is started at once)",
            file=sys.stderr,
        )
    return start_unix_ns, now_mono + (start_unix_ns - now_unix)


class _ShardRun:
    """One shard's run: its engine (``ShardDriver``), the per-second tick that adds each interval
    to the shard's total (and streams it, for Dask), and its result."""

    def __init__(
        self,
        ctx: RunContext,
        limits: LimitPlan,
        index: int,
        count: int,
        start_ns: int,
        progress: Progress | None,
        on_tick: TickSink | None,
        should_stop: Callable[[], str] | None,
        live: LiveView | None = None,
    ) -> None:
        self.ctx, self.limits, self.index, self.count = ctx, limits, index, count
        self.start_ns = start_ns
        self.total = RunRecorder(start_ns)
        self.on_tick, self.should_stop = on_tick, should_stop
        self.interrupted = False
        self.stopped = asyncio.Event()
        self.monitor = Monitor(ctx.scenario, self.total, progress=progress, stop=self.stop, live=live)
        self.populations = contexts(ctx.scenario, ctx.recorder, ctx.target, ctx.extra_ca)
        self.driver = ShardDriver(
            ctx,
            start_ns=start_ns,
            on_second=self.tick,
            shard=index - 1,
            shards=count,
            source_addresses=limits.source_addresses,
            worker=f"shard {index}",
            populations=self.populations,
        )

    def stop(self, reason: str) -> None:
        self.driver.stop(reason)

    def _take(self) -> dict[str, Any]:
        delta = self.ctx.recorder.take_interval()
        self.total.merge(delta)
        return delta

    def tick(self, gauges: Gauges) -> None:
        delta = self._take()
        self.monitor.tick(gauges)
        if self.on_tick is not None:
            self.on_tick(delta, gauges.vus, gauges.connections)
        if self.should_stop is not None and (reason := self.should_stop()):
            self.stop(reason)

    def on_signal(self, signum: int) -> None:
        self.interrupted = True
        self.stopped.set()
        self.stop(f"interrupted by signal {signum}")

    async def run(self, start_unix_ns: int, handle_signals: bool) -> None:
        guard = on_stop_signals(self.on_signal) if handle_signals else contextlib.nullcontext()
        try:
            with guard:
                if await _wait_for_start(
                    self.start_ns, start_unix_ns, self.stopped, f"{self.index}/{self.count}"
                ):
                    await self.driver.run()
        finally:
            self.monitor.done()
        delta = self._take()
        if self.on_tick is not None:
            self.on_tick(delta, 0, 0)

    def result(self, start_unix_ns: int, target: str) -> RunResult:
        engine = self.driver.engine
        start_ns = self.start_ns
        started_at = (
            datetime.fromtimestamp(start_unix_ns / 1e9, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        if self.populations:
            driver = self.driver
            plan = self.ctx.scenario
            result = plan_result(
                plan,
                self.total,
                started_at=started_at,
                duration_s=max(0.0, (time.monotonic_ns() - start_ns) / 1e9),
                target=target,
                limits=self.limits,
                max_connections=self.monitor.max_connections,
                interrupted=self.interrupted or driver.stop_reason.startswith("interrupted"),
                stop_reason=driver.stop_reason,
                stopped_at_s=None
                if driver.stopped_at_ns is None
                else (driver.stopped_at_ns - start_ns) / 1e9,
                tls=plan_tls(self.populations),
                shard=(self.index - 1, self.count),
                own_stops={n: (r, (at - start_ns) / 1e9) for n, (r, at) in driver.own_stops().items()},
                max_active=driver.max_active_each(),
            )
            own = shard_populations(
                plan,
                self.total,
                result.populations,
                index=self.index,
                count=self.count,
                start_unix_ns=start_unix_ns,
            )
            return replace(result, populations=own)
        return load_result(
            self.ctx.scenario,
            self.total,
            started_at=started_at,
            duration_s=max(0.0, (time.monotonic_ns() - start_ns) / 1e9),  # 0 if stopped before the start
            target=target,
            limits=self.limits,
            max_vus=max(self.monitor.max_vus, engine.max_active),
            max_connections=self.monitor.max_connections,
            interrupted=self.interrupted or engine.stop_reason.startswith("interrupted"),
            stop_reason=engine.stop_reason,
            stopped_at_s=None if engine.stopped_at_ns is None else (engine.stopped_at_ns - start_ns) / 1e9,
            tls=tls_info(self.ctx.scenario, self.ctx),
            shard=(self.index - 1, self.count),
        )


async def _wait_for_start(start_ns: int, start_unix_ns: int, stopped: asyncio.Event, shard: str) -> bool:
    """Wait for the shared start (monotonic ``start_ns``); False when a stop signal came first.

    Here, not in the engine's own sleep, so that SIGTERM/SIGINT ends a shard waiting for a
    ``--start-at`` an hour away at once (a Kubernetes delete sends SIGTERM, then SIGKILL after its
    grace period): the shard then reports itself interrupted with nothing measured.
    """
    delay = (start_ns - time.monotonic_ns()) / 1e9
    if delay > 1.0:
        at = datetime.fromtimestamp(start_unix_ns / 1e9, tz=UTC).isoformat(timespec="seconds")
        print(
            f"wsload: shard {shard} waits {delay:.1f}s for the shared start at {at.replace('+00:00', 'Z')}",
            file=sys.stderr,
            flush=True,
        )
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), delay)
    return not stopped.is_set()
