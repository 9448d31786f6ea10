"""``open``: webSocketOpen(url, options); latency is the whole connect, split TCP/TLS/upgrade."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from runner.client.options import ConnectOptions
from runner.engine.steps.base import StepOutcome, finish
from runner.engine.vu_support import render_error, resolve_url
from runner.model import OpenStep, StepKind

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser


async def execute(step: OpenStep, vu: VirtualUser) -> StepOutcome:
    ctx = vu.ctx
    spec = ctx.scenario.connections[step.connection]
    try:
        url = resolve_url(spec.url.render(vu.variables), ctx.target)
        options = ConnectOptions.from_spec(
            spec, url, ctx=vu.variables, timeout_s=step.timeout_s, source_address=vu.source_address
        )
    except Exception as exc:
        return finish(step, StepKind.OPEN, -1, None, render_error(exc))
    options = ctx.adjust_options(options)
    old = vu.sockets.pop(step.connection, None)
    if old is not None:
        await vu.client.close(old, 1.0)
    client = vu.client
    started = time.monotonic_ns()
    rc = await client.open(url, options)
    elapsed = time.monotonic_ns() - started
    if rc >= 0:
        vu.sockets[step.connection] = rc
        timing = client.timing(rc)
        tls = client.tls_status(rc)
        if tls is not None:
            ctx.note_tls(tls.verified, tls.ignored_errors, tls.all_ignored)
        latency = timing.total_ns or elapsed
        return finish(step, StepKind.OPEN, rc, latency, timing=timing)
    err = client.last_error()
    return finish(
        step,
        StepKind.OPEN,
        rc,
        elapsed,
        err.text if err else f"open failed with rc {rc}",
        err.keyword if err else None,
    )
