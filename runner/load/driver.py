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
from collections.abc import Callable
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
    failed iteration."""

    vus: int = 0
    connections: int = 0
    paused: int = 0


class ShardDriver:
    """Run shard ``shard`` of ``shards`` of ``ctx.scenario``'s load from ``start_ns`` on, sampling
    the generator's health as ``worker``; ``on_second(gauges)`` just after each second."""

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
    ) -> None:
        self.ctx = ctx
        self.start_ns = start_ns
        self.on_second = on_second
        self.engine = LoadEngine(
            ctx,
            start_ns=start_ns,
            shard=shard,
            shards=shards,
            source_addresses=source_addresses,
            client_factory=client_factory,
        )
        self.health = HealthSampler(ctx.recorder, worker, self.engine.send_blocked)

    def gauges(self) -> Gauges:
        vus, conns, paused = self.engine.gauges()
        return Gauges(vus, conns, paused)

    def stop(self, reason: str) -> None:
        self.engine.stop(reason)

    def _tick(self) -> None:
        self.health.second(self.ctx.recorder.second(time.monotonic_ns()) - 1)
        self.on_second(self.gauges())

    async def run(self) -> None:
        """Follow the plan to its end (or a stop), then end gracefully."""
        self.health.start()
        ticker = asyncio.ensure_future(each_second(self.start_ns, self._tick))
        try:
            await self.engine.run()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self.health.stop(self.ctx.recorder.second(time.monotonic_ns()))
