"""``open``: webSocketOpen(url, options); rc >= 0 the socket, -1 error, -2 time-out. Its latency
is the whole connect, split TCP/TLS/upgrade."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from runner.client.options import ConnectOptions
from runner.scenario.model import ConnectionSpec, Secret, StepBase, SuccessRule
from runner.scenario.urls import resolve_url
from runner.steps.base import Kind, RunView, StepNode, StepOutcome, StepParse, User, finish, render_error
from runner.steps.connect_options import connect_options
from runner.steps.schema import connection_step


@dataclass(frozen=True, slots=True)
class OpenStep(StepBase):
    kind: ClassVar[str] = "open"
    success: ClassVar[SuccessRule] = SuccessRule.NON_NEGATIVE

    connection: str = ""
    timeout_s: float | None = None  # overrides the connection's ``timeout``


def parse(node: StepNode, ctx: StepParse) -> OpenStep:
    connection = ctx.connection(node, "opens")
    return OpenStep(
        name=ctx.name(node, f"open {connection}"),
        location=node.location,
        expect=node.expect,
        connection=connection,
        timeout_s=ctx.timeout(node),
    )


def _is_static(spec: ConnectionSpec) -> bool:
    """True when the URL and every header value are the same for every user and iteration."""
    if not spec.url.is_static:
        return False
    return all(isinstance(v, Secret) or v.is_static for _, v in spec.headers)


def _prepare(step: OpenStep, vu: User, ctx: RunView, spec: ConnectionSpec) -> tuple[str, ConnectOptions]:
    """The URL and options of this open (may raise on a template that cannot be rendered).
    Secrets made here (a userinfo, a secret header's value) are registered before anything is
    sent, so whatever the server echoes, or an error quotes, is masked when it is recorded."""
    url = resolve_url(spec.url.render(vu.variables), ctx.target)
    secrets = ctx.secrets
    secrets.add_url(url)
    options = connect_options(
        spec,
        url,
        ctx=vu.variables,
        timeout_s=step.timeout_s,
        source_address=vu.source_address,
        secrets=secrets,
    )
    return url, ctx.adjust_options(options)


async def execute(step: OpenStep, vu: User) -> StepOutcome:
    vu.step_started_ns = time.monotonic_ns()
    ctx = vu.ctx
    spec = ctx.scenario.connections[step.connection]
    # Building the URL and ``ConnectOptions`` (templates, ten fields, the CA adjustment) was
    # ~3 us of every open in a load run; without per-user templates it is done once per step and
    # source address of the run (steps live as long as the run's context, so ids are stable).
    key = (id(step), vu.source_address)
    prepared = ctx.opens.get(key)
    if prepared is not None:
        url, options = prepared
    else:
        try:
            url, options = _prepare(step, vu, ctx, spec)
        except Exception as exc:
            return finish(step, -1, None, render_error(exc))
        if _is_static(spec):
            ctx.opens[key] = (url, options)
    sockets = vu.sockets
    if step.connection in sockets:  # opened again: the old one closes, backgrounds using it first
        if vu.backgrounds_use(step.connection):
            await vu.release(step.connection)
        await vu.client.close(sockets.pop(step.connection), 1.0)
    client = vu.client
    started = time.monotonic_ns()
    rc = await client.open(url, options)
    if rc >= 0:
        sockets[step.connection] = rc
        timing = client.timing(rc)
        tls = client.tls_status(rc)
        if tls is not None:
            ctx.note_tls(tls.verified, tls.ignored_errors, tls.all_ignored)
        return finish(step, rc, timing.total_ns or time.monotonic_ns() - started, timing=timing)
    elapsed = time.monotonic_ns() - started
    err = client.last_error()
    return finish(
        step,
        rc,
        elapsed,
        err.text if err else f"open failed with rc {rc}",
        err.keyword if err else None,
    )


KIND = Kind(
    name="open",
    step=OpenStep,
    schema=connection_step(
        "open",
        "Open a connection (webSocketOpen): rc >= 0 socket, -1 error, -2 time-out.",
        "The connection to open.",
        "Connect time-out for this step, overriding the connection's.",
    ),
    parse=parse,
    execute=execute,
    summary="`open: main` | socket number >= 0; -1 error; -2 time-out",
)
