"""``write``: webSocketWrite(socket, message); latency is the time of the write call.

After the write the step waits while the send buffer is above its high-water mark, at most the
scenario's read time-out (``defaults.read_timeout``); a peer that still has not read by then fails
the step with -1 and a time-out text instead of holding it, or our memory, without bound.
"""

from __future__ import annotations

from time import monotonic_ns
from typing import TYPE_CHECKING

from runner.scenario.model import BinaryPayload, JsonPayload, StepKind, TextPayload, WriteStep
from runner.scenario.urls import render_error
from runner.steps.base import StepOutcome, finish, not_open

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser


def render_payload(step: WriteStep, variables: dict[str, object]) -> str | bytes:
    """The frame to send: static payloads are the precompiled constant, no work per send."""
    payload = step.payload
    if type(payload) is JsonPayload:  # the commonest first, without an ABC check
        return payload.value.dumps(variables)
    if isinstance(payload, TextPayload):
        return payload.template.render(variables)
    if isinstance(payload, BinaryPayload):
        return payload.data
    return ""


async def execute(step: WriteStep, vu: VirtualUser) -> StepOutcome | int:
    sock = vu.sockets.get(step.connection)
    if sock is None:
        return not_open(step, StepKind.WRITE, step.connection)
    try:
        data = render_payload(step, vu.variables)
    except Exception as exc:
        return finish(step, StepKind.WRITE, -1, None, render_error(exc))
    client = vu.client
    # where the answer's response time starts (``VirtualUser.requests``)
    vu.requests[step.connection] = vu.step_started_ns = started = monotonic_ns()
    rc = client.write(sock, data)
    latency = monotonic_ns() - started
    if rc < 0:
        err = client.last_error()
        return finish(
            step,
            StepKind.WRITE,
            rc,
            latency,
            err.text if err else "write failed",
            err.keyword if err else None,
        )
    # A peer that does not read must not hold the step forever: the drain is bounded by the
    # scenario's read time-out, and a send buffer still full then fails the write with -1.
    paused = client.write_paused(sock)  # no coroutine per write while the buffer is below its mark
    if not paused and step.expect.outcome_default:
        return latency  # passed, default success: the per-message shortcut (see ``base``)
    if paused:
        drained = await client.drain(sock, vu.ctx.scenario.read_timeout_s)
        if drained is not None and drained < 0:
            err = client.last_error()
            return finish(step, StepKind.WRITE, -1, latency, err.text if err else "send buffer did not drain")
    return finish(step, StepKind.WRITE, rc, latency)
