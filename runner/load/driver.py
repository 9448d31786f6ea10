"""One process's part of a load run, the same wherever it runs: the engine, the generator's
health sampler and the once-a-second tick.

``ShardDriver`` is what a single-process run (``runner.load.run``), a worker process
(``runner.load.workers``) and a cluster shard (``runner.cluster.shard``) each drive; they differ
only in what they do with each second (``on_second``: feed the progress monitor, send a delta to
the parent, stream it to a Dask client) and in how a stop reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.engine.vu import RunContext
from runner.load.engine import LoadEngine
from runner.load.health import HealthSampler
from runner.runtime import each_second

if TYPE_CHECKING:
    from runner.client import WebSocketClient

__all__ = ["Gauges", "ShardDriver"]


@dataclass(frozen=True, slots=True)
class Gauges:
    """What one process has right now: active users, open connections, users pausing after a
    failed iteration; for a plan, the same per population (in the plan's order)."""

    vus: int = 0
    connections: int = 0
    paused: int = 0
    populations: tuple[tuple[int, int, int], ...] = ()

    @staticmethod
    def total(parts: Sequence[Gauges]) -> Gauges:
        """The gauges of several processes summed (a plan's populations element by element)."""
        width = max((len(g.populations) for g in parts), default=0)
        each = [[0, 0, 0] for _ in range(width)]
        for g in parts:
            for i, (vus, conns, paused) in enumerate(g.populations):
                each[i][0] += vus
                each[i][1] += conns
                each[i][2] += paused
        return Gauges(
            sum(g.vus for g in parts),
            sum(g.connections for g in parts),
            sum(g.paused for g in parts),
            tuple((v, c, p) for v, c, p in each),
        )


class ShardDriver:
    """Run shard ``shard`` of ``shards`` of ``ctx.scenario``'s load from ``start_ns`` on, sampling
    the generator's health as ``worker``; ``on_second(gauges)`` just after each second.

    A plan runs one engine per population, each with its own context (``populations``: the
    contexts, recording into the populations of ``ctx.recorder``), on this one event loop, from
    the same ``start_ns``; they stop together on ``stop``, and each ends at its own plan's end.
    """

    def __init__(
        self,
        ctx: RunContext,
        *,
        start_ns: int,
        on_second: Callable[[Gauges], None],
        shard: int = 0,
        shards: int = 1,
        source_addresses: tuple[str, ...] = (),
        worker: str = "1",
        client_factory: Callable[[], WebSocketClient] | None = None,
        populations: Sequence[RunContext] = (),
    ) -> None:
        self.ctx = ctx
        self.start_ns = start_ns
        self.on_second = on_second
        self.engines = tuple(
            LoadEngine(
                each,
                start_ns=start_ns,
                shard=shard,
                shards=shards,
                source_addresses=source_addresses,
                client_factory=client_factory,
            )
            for each in (populations or (ctx,))
        )
        self.engine = self.engines[0]
        self.plan = bool(populations)
        self.health = HealthSampler(ctx.recorder, worker, self._send_blocked)
        self._stop_reason = ""
        self._stopped_at_ns: int | None = None

    def _send_blocked(self) -> int:
        return sum(e.send_blocked() for e in self.engines)

    def gauges(self) -> Gauges:
        each = [e.gauges() for e in self.engines]
        return Gauges(
            sum(g[0] for g in each),
            sum(g[1] for g in each),
            sum(g[2] for g in each),
            tuple(each) if self.plan else (),
        )

    def stop(self, reason: str) -> None:
        if not self._stop_reason:
            self._stop_reason = reason
            self._stopped_at_ns = time.monotonic_ns()
        for engine in self.engines:
            engine.stop(reason)

    @property
    def stop_reason(self) -> str:
        """Why the run stopped early: a stop of the whole, else the first an engine gave itself
        (a data file run out; for a plan, named by its population)."""
        if not self.plan:
            return self.engine.stop_reason
        if self._stop_reason:
            return self._stop_reason
        for ctx, engine in zip(self._contexts(), self.engines, strict=True):
            if engine.stop_reason:
                return f"{ctx.scenario.name}: {engine.stop_reason}"
        return ""

    @property
    def stopped_at_ns(self) -> int | None:
        """When a stop of the whole came (a population ending itself early is its own affair)."""
        return self._stopped_at_ns if self.plan else self.engine.stopped_at_ns

    def own_stops(self) -> dict[str, tuple[str, int]]:
        """The engines that ended themselves before any stop of the whole (``exhausted: stop``):
        population ("" for a lone scenario) -> (reason, when, monotonic ns)."""
        out: dict[str, tuple[str, int]] = {}
        for engine in self.engines:
            at = engine.stopped_at_ns
            if at is not None and (self._stopped_at_ns is None or at < self._stopped_at_ns):
                out[engine.ctx.scenario.name if self.plan else ""] = (engine.stop_reason, at)
        return out

    def max_active_each(self) -> tuple[int, ...]:
        """A plan's: the most users each population had active at once (the plan's order)."""
        return tuple(e.max_active for e in self.engines) if self.plan else ()

    @property
    def max_active(self) -> int:
        return sum(e.max_active for e in self.engines)

    def _contexts(self) -> list[RunContext]:
        return [e.ctx for e in self.engines]

    def _tick(self) -> None:
        self.health.second(self.ctx.recorder.second(time.monotonic_ns()) - 1)
        self.on_second(self.gauges())

    async def run(self) -> None:
        """Follow the plan to its end (or a stop), then end gracefully."""
        self.health.start()
        ticker = asyncio.ensure_future(each_second(self.start_ns, self._tick))
        try:
            if len(self.engines) == 1:
                await self.engine.run()
            else:
                await asyncio.gather(*(e.run() for e in self.engines))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self.health.stop(self.ctx.recorder.second(time.monotonic_ns()))
