"""``ping``: send a ping, wait for the pong; latency is the round trip."""

from __future__ import annotations

from time import monotonic_ns
from typing import TYPE_CHECKING

from runner.scenario.model import PingStep, StepKind
from runner.steps.base import StepOutcome, finish, not_open

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser


async def execute(step: PingStep, vu: VirtualUser) -> StepOutcome:
    sock = vu.sockets.get(step.connection)
    if sock is None:
        return not_open(step, StepKind.PING, step.connection)
    client = vu.client
    timeout = step.timeout_s if step.timeout_s is not None else vu.ctx.scenario.read_timeout_s
    vu.step_started_ns = monotonic_ns()
    result = await client.ping(sock, timeout)
    if result.rc != 0:
        err = client.last_error()
        text = err.text if err else None
        if result.rc == -2:
            text = f"time-out: no pong within {timeout:g}s"
        return finish(
            step, StepKind.PING, result.rc, None, text or "ping failed", err.keyword if err else None
        )
    return finish(step, StepKind.PING, 0, result.rtt_ns)
