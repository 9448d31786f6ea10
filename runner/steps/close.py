"""``close``: webSocketClose(socket); the connection is forgotten whatever the rc."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from runner.scenario.model import CloseStep, StepKind
from runner.steps.base import StepOutcome, finish, not_open

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser


async def execute(step: CloseStep, vu: VirtualUser) -> StepOutcome | int:
    sock = vu.sockets.pop(step.connection, None)
    if sock is None:
        return not_open(step, StepKind.CLOSE, step.connection)
    client = vu.client
    timeout = step.timeout_s
    started = vu.step_started_ns = time.monotonic_ns()
    rc = await client.close(sock, 5.0 if timeout is None else timeout)
    latency = time.monotonic_ns() - started
    if rc == 0 and step.expect.outcome_default:
        return latency  # passed, default success: the per-message shortcut (see ``base``)
    if rc != 0:
        err = client.last_error()
        return finish(
            step,
            StepKind.CLOSE,
            rc,
            latency,
            err.text if err else "close failed",
            err.keyword if err else None,
        )
    return finish(step, StepKind.CLOSE, rc, latency)
