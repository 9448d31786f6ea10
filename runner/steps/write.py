"""``write``: webSocketWrite(socket, message); rc the bytes written, -1 error. Its latency is the
time of the write call.

After the write the step waits while the send buffer is above its high-water mark, at most the
scenario's read time-out (``defaults.read_timeout``); a peer that still has not read by then fails
the step with -1 and a time-out text instead of holding it, or our memory, without bound.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from time import monotonic_ns
from typing import Any, ClassVar, TypeAlias

from runner.scenario.model import MAX_PAYLOAD_BYTES, StepBase, SuccessRule
from runner.scenario.source import Path
from runner.scenario.templates import JsonTemplate, Template
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User, finish, not_open, render_error
from runner.steps.schema import step_name


@dataclass(frozen=True, slots=True)
class TextPayload:
    """A text frame; the template is rendered per send unless static."""

    template: Template


@dataclass(frozen=True, slots=True)
class JsonPayload:
    """A text frame holding JSON; static values are serialised once at load."""

    value: JsonTemplate


@dataclass(frozen=True, slots=True)
class BinaryPayload:
    """A binary frame: bytes from hex, base64, a file, or a generated size (made at load)."""

    data: bytes


Payload: TypeAlias = "TextPayload | JsonPayload | BinaryPayload"


@dataclass(frozen=True, slots=True)
class WriteStep(StepBase):
    kind: ClassVar[str] = "write"
    success: ClassVar[SuccessRule] = SuccessRule.NON_NEGATIVE

    connection: str = ""
    payload: Payload | None = None


def parse(node: StepNode, ctx: StepParse) -> WriteStep:
    connection = ctx.connection(node, "uses")
    return WriteStep(
        name=ctx.name(node, f"write {connection}"),
        location=node.location,
        expect=node.expect,
        connection=connection,
        payload=parse_payload(node.body, node.body_path, ctx),
    )


def parse_payload(body: dict[str, Any], path: Path, ctx: StepParse) -> Payload:
    """``text``, ``json`` or ``binary`` (hex, base64, a file, a generated size), made at load."""
    if "text" in body:
        text = body["text"]
        if len(text.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
            ctx.problem((*path, "text"), "inline text is larger than 16 MiB; use binary: {file: ...}")
        return TextPayload(ctx.template(text, (*path, "text")))
    if "json" in body:
        value = ctx.json_template(body["json"], (*path, "json"))
        if value.is_static and len(value.dumps({})) > MAX_PAYLOAD_BYTES:
            ctx.problem((*path, "json"), "inline JSON is larger than 16 MiB")
        return JsonPayload(value)
    return BinaryPayload(_binary(body["binary"], (*path, "binary"), ctx))


def _binary(spec: dict[str, Any], path: Path, ctx: StepParse) -> bytes:
    data = b""
    if "hex" in spec:
        data = bytes.fromhex("".join(spec["hex"].split()))
    elif "base64" in spec:
        try:
            data = base64.b64decode("".join(spec["base64"].split()), validate=True)
        except (binascii.Error, ValueError):
            ctx.problem((*path, "base64"), "not valid base64")
    elif "file" in spec:
        got = ctx.read_file(spec["file"], (*path, "file"), binary=True)
        data = got if isinstance(got, bytes) else b""
    else:
        size = ctx.size(spec["size"], (*path, "size"))
        if size > MAX_PAYLOAD_BYTES:
            ctx.problem((*path, "size"), f"{spec['size']!r} is larger than the 16 MiB payload limit")
        else:
            data = (bytes(range(256)) * (size // 256 + 1))[:size]
    if len(data) > MAX_PAYLOAD_BYTES:
        ctx.problem(path, "binary payload is larger than 16 MiB")
    return data


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


@dataclass(frozen=True, slots=True)
class Sent:
    """A write handed to the client while the send buffer is above its high-water mark: the step
    still has to wait for it to drain (``drained``)."""

    rc: int
    latency_ns: int


def send_now(step: WriteStep, vu: User) -> StepOutcome | int | Sent:
    """The write without waiting: its outcome, or ``Sent`` when the step must still wait for
    the send buffer to drain. ``execute`` is this, and ``drained`` when it says so; the engine's
    callback rounds (``runner.engine.rounds``) call it from a connection's callback."""
    sock = vu.sockets.get(step.connection)
    if sock is None:
        return not_open(step, step.connection)
    try:
        data = render_payload(step, vu.variables)
    except Exception as exc:
        return finish(step, -1, None, render_error(exc))
    client = vu.client
    # where the answer's response time starts (``VirtualUser.requests``)
    vu.requests[step.connection] = vu.step_started_ns = started = monotonic_ns()
    rc = client.write(sock, data)
    latency = monotonic_ns() - started
    if rc < 0:
        err = client.last_error()
        return finish(
            step,
            rc,
            latency,
            err.text if err else "write failed",
            err.keyword if err else None,
        )
    # No coroutine per write while the buffer is below its mark; ``paused`` is empty then.
    if client.paused and client.write_paused(sock):
        return Sent(rc, latency)
    if step.expect.outcome_default:
        return latency  # passed, default success: the per-message shortcut (see ``base``)
    return finish(step, rc, latency)


async def drained(step: WriteStep, vu: User, sent: Sent) -> StepOutcome:
    """The rest of a write ``send_now`` left waiting: a peer that does not read must not hold
    the step forever, so the drain is bounded by the scenario's read time-out, and a send buffer
    still full then fails the write with -1."""
    client = vu.client
    sock = vu.sockets.get(step.connection)
    if sock is not None and await client.drain(sock, vu.ctx.scenario.read_timeout_s) < 0:
        err = client.last_error()
        return finish(step, -1, sent.latency_ns, err.text if err else "send buffer did not drain")
    return finish(step, sent.rc, sent.latency_ns)


async def execute(step: WriteStep, vu: User) -> StepOutcome | int:
    outcome = send_now(step, vu)
    if type(outcome) is Sent:
        return await drained(step, vu, outcome)
    return outcome  # type: ignore[return-value]  # (not a ``Sent``)


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Send one message (webSocketWrite).",
    "properties": {
        "write": {
            "description": "What to send, and on which connection.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "connection": {
                    "$ref": "#/$defs/connectionName",
                    "description": "The connection to use; may be left out when only one is declared.",
                },
                "text": {"type": "string", "description": "Send a text frame (may hold {{ templates }})."},
                "json": {
                    "description": "Send this value as a JSON text frame (strings may hold {{ templates }}; "
                    "'{{ x }}' alone keeps x's type)."
                },
                "binary": {
                    "description": "Send a binary frame from hex, base64, a file, or a generated size.",
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "hex": {
                            "type": "string",
                            "pattern": "^(?:\\s*[0-9a-fA-F]{2})*\\s*$",
                            "errorMessage": "hex digits in pairs",
                            "description": "Bytes as hex digits.",
                        },
                        "base64": {"type": "string", "description": "Bytes as base64."},
                        "file": {
                            "type": "string",
                            "minLength": 1,
                            "description": "Bytes of this file, relative to the scenario file.",
                        },
                        "size": {"$ref": "#/$defs/size", "description": "This many generated bytes."},
                    },
                    "oneOf": [
                        {"required": ["hex"]},
                        {"required": ["base64"]},
                        {"required": ["file"]},
                        {"required": ["size"]},
                    ],
                },
            },
            "oneOf": [{"required": ["text"]}, {"required": ["json"]}, {"required": ["binary"]}],
        },
        "name": step_name(),
        "expect": {"$ref": "#/$defs/expect", "description": "What the step's outcome must be."},
    },
    "additionalProperties": False,
}

KIND = Kind(
    name="write",
    step=WriteStep,
    schema=_SCHEMA,
    parse=parse,
    execute=execute,
    message=True,
    summary="`write: {connection, text \\| json \\| binary: {hex \\| base64 \\| file \\| size}}` | "
    "bytes written; -1 error",
)
