"""``quiet``: the connection must stay quiet: no message arrives for ``for`` (a subscription that
must not fire, a server that must not answer). rc 0 nothing came; -1 a message came (its text
says after how long and what it was), or an error; 1 the peer closed.

Added as one module, to show that a step kind is one: its model, schema, parsing, execution and
success rule are all here (``runner/steps/base.py`` says what a kind is).
"""

from __future__ import annotations

from dataclasses import dataclass
from time import monotonic_ns
from typing import Any, ClassVar

from runner.checks.expect import describe
from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User, finish, not_open
from runner.steps.schema import duration, step_name


@dataclass(frozen=True, slots=True)
class QuietStep(StepBase):
    kind: ClassVar[str] = "quiet"

    connection: str = ""
    for_s: float = 0.0


def parse(node: StepNode, ctx: StepParse) -> QuietStep:
    connection = ctx.connection(node, "uses")
    return QuietStep(
        name=ctx.name(node, f"quiet {connection}"),
        location=node.location,
        expect=node.expect,
        connection=connection,
        for_s=ctx.duration(node.body["for"], (*node.body_path, "for")),
    )


async def execute(step: QuietStep, vu: User) -> StepOutcome:
    sock = vu.sockets.get(step.connection)
    if sock is None:
        return not_open(step, step.connection)
    client = vu.client
    started = vu.step_started_ns = monotonic_ns()
    result = await client.read(sock, step.for_s)
    waited = monotonic_ns() - started
    if result.rc == -2:  # the whole time passed without a message: what the step wants
        return finish(step, 0, waited)
    if result.rc == 0:
        text = f"a message came after {waited / 1e6:.1f} ms of {step.for_s:g}s: {describe(result.data, 80)!r}"
        return finish(step, -1, waited, text)
    err = client.last_error()
    return finish(step, result.rc, waited, err.text if err else f"read failed with rc {result.rc}")


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The connection must stay quiet: no message may arrive for a while.",
    "properties": {
        "quiet": {
            "type": "object",
            "description": "Which connection, and for how long.",
            "properties": {
                "connection": {
                    "$ref": "#/$defs/connectionName",
                    "description": "The connection to use; may be left out when only one is declared.",
                },
                "for": duration("How long no message may arrive."),
            },
            "required": ["for"],
            "additionalProperties": False,
        },
        "name": step_name(),
        "expect": {"$ref": "#/$defs/expect", "description": "What the step's outcome must be."},
    },
    "additionalProperties": False,
}

KIND = Kind(
    name="quiet",
    step=QuietStep,
    schema=_SCHEMA,
    parse=parse,
    execute=execute,
    reads=True,  # it takes the messages that come (a read beside it would miss them)
    summary="`quiet: {connection, for: 500ms}` | "
    "0 nothing came; -1 a message came (or an error); 1 the peer closed",
)
