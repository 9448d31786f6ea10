"""``close``: webSocketClose(socket); the connection is forgotten whatever the rc."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User, finish, not_open
from runner.steps.schema import connection_step


@dataclass(frozen=True, slots=True)
class CloseStep(StepBase):
    kind: ClassVar[str] = "close"

    connection: str = ""
    timeout_s: float | None = None


def parse(node: StepNode, ctx: StepParse) -> CloseStep:
    connection = ctx.connection(node, "closes")
    return CloseStep(
        name=ctx.name(node, f"close {connection}"),
        location=node.location,
        expect=node.expect,
        connection=connection,
        timeout_s=ctx.timeout(node),
    )


async def execute(step: CloseStep, vu: User) -> StepOutcome | int:
    if vu.backgrounds_use(step.connection):  # a background (``every``) using it ends its round first
        await vu.release(step.connection)
    sock = vu.sockets.pop(step.connection, None)
    if sock is None:
        return not_open(step, step.connection)
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
            rc,
            latency,
            err.text if err else "close failed",
            err.keyword if err else None,
        )
    return finish(step, rc, latency)


KIND = Kind(
    name="close",
    step=CloseStep,
    schema=connection_step(
        "close",
        "Close a connection (webSocketClose): rc 0, -1 error.",
        "The connection to close.",
        "Time to wait for the closing handshake.",
    ),
    parse=parse,
    execute=execute,
    summary="`close: main` | 0; -1 error",
)
