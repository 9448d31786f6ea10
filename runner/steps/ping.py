"""``ping``: send a ping, wait for the pong; latency is the round trip."""

from __future__ import annotations

from dataclasses import dataclass
from time import monotonic_ns
from typing import ClassVar

from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User, finish, not_open
from runner.steps.schema import connection_step


@dataclass(frozen=True, slots=True)
class PingStep(StepBase):
    kind: ClassVar[str] = "ping"

    connection: str = ""
    timeout_s: float | None = None  # None: the scenario's default read time-out


def parse(node: StepNode, ctx: StepParse) -> PingStep:
    connection = ctx.connection(node, "uses")
    return PingStep(
        name=ctx.name(node, f"ping {connection}"),
        location=node.location,
        expect=node.expect,
        connection=connection,
        timeout_s=ctx.timeout(node),
    )


async def execute(step: PingStep, vu: User) -> StepOutcome:
    sock = vu.sockets.get(step.connection)
    if sock is None:
        return not_open(step, step.connection)
    client = vu.client
    timeout = step.timeout_s if step.timeout_s is not None else vu.ctx.scenario.read_timeout_s
    vu.step_started_ns = monotonic_ns()
    result = await client.ping(sock, timeout)
    if result.rc != 0:
        err = client.last_error()
        text = err.text if err else None
        if result.rc == -2:
            text = f"time-out: no pong within {timeout:g}s"
        return finish(step, result.rc, None, text or "ping failed", err.keyword if err else None)
    return finish(step, 0, result.rtt_ns)


KIND = Kind(
    name="ping",
    step=PingStep,
    schema=connection_step(
        "ping",
        "Send a ping and wait for its pong; records the round trip.",
        "The connection to ping.",
        "Time to wait for the pong.",
    ),
    parse=parse,
    execute=execute,
    summary="`ping: main` | 0 pong (its round trip is recorded); -1; -2",
)
