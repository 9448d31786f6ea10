"""``read``: webSocketRead(socket, timeout); rc 0 a message, 1 the peer closed, -1 error, -2
time-out. With ``match``, the first matching message.

Messages that do not match are counted as skipped; the time-out covers the whole wait, so the
remaining time shrinks with every skipped message. Latency is from when the last write on this
connection was handed to the kernel (writes leave at the end of the loop turn they were made in;
``runner/client/connection.py``), or from the start of the read if nothing was written, to when the
matched message was parsed by the client.

``latency_from: {json: sent_at, unit: ms}`` adds the **delivery** latency: from the time stamped
in the message (a JMESPath to a number, or a numeric string, since the epoch in ``unit``: s, ms,
us or ns) to when the client parsed it, by this machine's wall clock. A publisher stamping
``{{ now_ms() }}`` and many subscribers reading with it give publish-to-delivery percentiles
(fan-out latency). The stamp is the sender's clock: across machines (shards) the clocks must be
synchronised (NTP keeps them within about a millisecond on a LAN; PTP better). A stamp later
than the arrival (a sender's clock ahead of ours) is recorded as 0 and counted as ``ahead``.
A message without a number at the path fails the read (the scenario expected stamped ones).

With ``id: PATH`` (a JMESPath to the message's id, unique in the run) the step also counts each
message's **reach**: how many reads received it, and how long until the last of them did (its
largest delivery latency), merged over users, workers and shards. A message without an id
fails the read, as one without a stamp does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from time import monotonic_ns, time_ns
from typing import TYPE_CHECKING, Any, ClassVar

from runner.checks.expect import (
    Failure,
    Message,
    apply_captures,
    check_content,
    compiled_jmespath,
    describe,
    match_json_fields,
)
from runner.client.codes import ReadResult
from runner.runtime import lazy_module

if TYPE_CHECKING:
    from runner.client import WebSocketClient
    from runner.client.codes import LastError
from runner.scenario.model import Capture, Matcher, StepBase
from runner.scenario.source import Path
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User, finish, not_open
from runner.steps.schema import connection_step

if TYPE_CHECKING:
    import jmespath
else:  # loaded at first use (``runner.runtime.lazy_module``)
    jmespath = lazy_module("jmespath")


@dataclass(frozen=True, slots=True)
class ReadStep(StepBase):
    kind: ClassVar[str] = "read"

    connection: str = ""
    timeout_s: float | None = None  # None: the scenario's default read time-out
    match: Matcher | None = None  # wait for the first matching message, skipping others
    captures: tuple[Capture, ...] = ()
    latency_from: Stamp | None = None  # where the message says when it was sent


#: ``latency_from``'s units: nanoseconds per unit.
STAMP_UNITS: dict[str, int] = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


@dataclass(frozen=True, slots=True)
class Stamp:
    """A send time inside a message: a JMESPath to a number (or a numeric string) since the epoch,
    in ``unit`` (``STAMP_UNITS``)."""

    path: str
    unit: str = "ms"
    id_path: str | None = None  # where the message's id is (for reach), if it is counted

    def message_id(self, message: Message) -> str | None:
        """The message's id as text (``7`` and ``"7"`` are one id), or None when it has none."""
        assert self.id_path is not None
        try:
            value = compiled_jmespath(self.id_path).search(message.json())
        except ValueError:
            return None
        if value is None or isinstance(value, dict | list):
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def taken(self, message: Message) -> tuple[int, str | None] | Failure:
        """What a read and a receive take from a stamped message: its send time in nanoseconds
        since the epoch and its id (None when ``id_path`` is not given), or the failure of a
        message without them (the scenario expected stamped ones)."""
        sent = self.sent_ns(message)
        if sent is None:
            return Failure(
                f"latency_from: no send time at {self.path!r} (a number of {self.unit} since the epoch)",
                f"{self.path}: a number",
                describe(message.data),
            )
        if self.id_path is None:
            return sent, None
        message_id = self.message_id(message)
        if message_id is None:
            return Failure(
                f"latency_from: no message id at {self.id_path!r} (a string or number)",
                f"{self.id_path}: an id",
                describe(message.data),
            )
        return sent, message_id

    def sent_ns(self, message: Message) -> int | None:
        """The stamp in nanoseconds since the epoch, or None when the message has none."""
        try:
            value = compiled_jmespath(self.path).search(message.json())
        except ValueError:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        try:
            return int(value * STAMP_UNITS[self.unit])
        except OverflowError:  # a finite stamp beyond any clock once in nanoseconds
            return None


def parse(node: StepNode, ctx: StepParse) -> ReadStep:
    connection = ctx.connection(node, "uses")
    opts = node.body if isinstance(node.body, dict) else {}
    return ReadStep(
        name=ctx.name(node, f"read {connection}"),
        location=node.location,
        expect=node.expect,
        connection=connection,
        timeout_s=ctx.timeout(node),
        match=ctx.content(opts["match"], (*node.body_path, "match")) if "match" in opts else None,
        captures=ctx.captures(node.raw.get("capture") or {}, (*node.path, "capture")),
        latency_from=parse_stamp(opts["latency_from"], (*node.body_path, "latency_from"), ctx)
        if "latency_from" in opts
        else None,
    )


def parse_stamp(spec: dict[str, Any], path: Path, ctx: StepParse) -> Stamp | None:
    """``latency_from: {json: PATH, unit: ms, id: PATH}`` (the schema has checked its shape)."""
    valid = True
    for key in ("json", "id"):
        if key not in spec:
            continue
        try:
            jmespath.compile(spec[key])
        except jmespath.exceptions.JMESPathError as exc:
            why = str(exc).splitlines()[0].removeprefix("Invalid jmespath expression: ")
            ctx.problem((*path, key), f"invalid JMESPath {spec[key]!r}: {why}")
            valid = False
    return Stamp(spec["json"], spec.get("unit", "ms"), spec.get("id")) if valid else None


def _capture(step: ReadStep, message: Message, failure: Failure | None, vu: User) -> Failure | None:
    """Store the captures of a message that passed its checks. Values captured as secrets are
    registered before the outcome is recorded, and so is a secret the message holds when its
    checks failed: the failure text quotes the message (a login answer that was not what the
    scenario expected still carries the token)."""
    if failure is None:
        values, failure = apply_captures(step.captures, message)
        vu.variables.update(values)
    else:
        values, _ = apply_captures(tuple(c for c in step.captures if c.secret), message)
    secrets = vu.ctx.secrets
    for cap in step.captures:
        if cap.secret and cap.variable in values:
            secrets.add(values[cap.variable])
    return failure


def timeout_of(step: ReadStep, vu: User) -> float:
    """The read's time-out in seconds: its own, or the scenario's default."""
    return step.timeout_s if step.timeout_s is not None else vu.ctx.scenario.read_timeout_s


async def execute(step: ReadStep, vu: User) -> StepOutcome | int:
    sock = vu.sockets.get(step.connection)
    if sock is None:
        return not_open(step, step.connection)
    client = vu.client
    timeout_s = timeout_of(step, vu)
    now = started = vu.step_started_ns = monotonic_ns()
    deadline = started + int(timeout_s * 1e9)
    skipped = 0
    while True:
        if skipped and (now := monotonic_ns()) >= deadline:
            # A busy stream keeps the buffer full: the time-out must still end the wait.
            result = ReadResult(-2)
        else:
            result = await client.read(sock, max(0.0, (deadline - now) / 1e9))
        outcome = settle(step, vu, result, client.last_write_ns(sock) or started, skipped, timeout_s)
        if outcome is not None:
            return outcome
        skipped += 1


def settle(
    step: ReadStep, vu: User, result: ReadResult, since: int, skipped: int, timeout_s: float
) -> StepOutcome | int | None:
    """What the read makes of what the client returned (a message, the peer's close, an error,
    the time-out), ``skipped`` messages after it began; a message's latency runs from ``since``
    (the connection's last write, or the read's start if nothing was written): its outcome, or None for
    a message that does not ``match`` (skipped: the read waits on). ``execute`` and the engine's
    callback rounds (``runner.engine.rounds``) share it."""
    if result.rc != 0:
        return _no_message(step, vu, result, timeout_s, skipped)
    data = result.data if result.data is not None else ""
    match = step.match
    if match is not None:
        fields = match.json_fields
        # The per-message case of a load run (a flat JSON ``match``), decided without the
        # general checks when it can be; ``matches`` is the same decision in full.
        hit = match_json_fields(fields, data, vu.variables) if fields is not None else None
        if hit is None:  # undecided by the shortcut
            try:
                hit = check_content(match, Message(data), vu.variables) is None
            except Exception as exc:
                return finish(
                    step, 0, None, content_failure=Failure(f"match: {exc}"), skipped_messages=skipped
                )
        if not hit:
            return None
    received = result.received_ns  # (0 when not known: now)
    # a message that came before the write it answers: 0 (a conditional, not a ``max`` call)
    latency = (received - since if received > since else 0) if received else monotonic_ns() - since
    expect = step.expect
    if step.latency_from is not None:
        return _delivered(step, vu, data, latency, skipped, result.received_ns)
    if expect.content is None and not step.captures and expect.outcome_default:
        if not skipped:
            return latency  # passed, default success: the per-message shortcut (see ``base``)
        return StepOutcome(0, latency, None, None, skipped)  # ``finish``'s success path
    return _checked(step, vu, data, latency, skipped)


def _delivered(
    step: ReadStep, vu: User, data: str | bytes, latency: int, skipped: int, received_ns: int
) -> StepOutcome:
    """A message whose send time the read records (``latency_from``): its checks, and then the
    delivery latency, from the stamp to the parse by this machine's wall clock."""
    outcome = _checked(step, vu, data, latency, skipped)
    stamp = step.latency_from
    assert stamp is not None
    if outcome.failure is not None:
        return outcome
    taken = stamp.taken(Message(data))
    if isinstance(taken, Failure):
        return finish(step, 0, latency, content_failure=taken, skipped_messages=skipped)
    sent, outcome.message_id = taken
    outcome.delivery_ns = wall_ns(received_ns) - sent
    return outcome


def _checked(step: ReadStep, vu: User, data: str | bytes, latency: int, skipped: int) -> StepOutcome:
    """A message with content checks or captures to apply."""
    message = Message(data)
    failure = None
    content = step.expect.content
    if content is not None:
        try:
            failure = check_content(content, message, vu.variables)
        except Exception as exc:
            failure = Failure(f"expect: {exc}", "", describe(message.data))
    if step.captures:
        failure = _capture(step, message, failure, vu)
    return finish(step, 0, latency, content_failure=failure, skipped_messages=skipped)


def wall_ns(monotonic: int) -> int:
    """A monotonic reading (a message's parse) as nanoseconds since the epoch, converted when
    used: an offset between the clocks taken once drifts while NTP slews the wall clock (0.48%
    measured on this machine, 10 ms over a 2 s receive, which made stamps look "ahead").
    0: not known, now."""
    now = time_ns()
    return now - (monotonic_ns() - monotonic) if monotonic else now


def why_ended(client: WebSocketClient, result: ReadResult) -> tuple[str | None, LastError | None]:
    """Why a read (or a receive) ended without a message, and the client's error: for 1 the
    peer's close code and reason (or, without a close frame, how the connection ended), for -1
    the client's last error. The socket stays known: a later close step (or the end) frees it."""
    err = client.last_error() if result.rc == -1 else None
    text = err.text if err else None
    if result.rc == 1:
        reason = f", reason {result.close_reason!r}" if result.close_reason else ""
        text = f"connection closed by peer (code {result.close_code}{reason})"
        last = client.last_error()
        if result.close_code is None and last is not None:  # no close frame: say how it ended
            text = last.text
    return text, err


def _no_message(step: ReadStep, vu: User, result: ReadResult, timeout_s: float, skipped: int) -> StepOutcome:
    """The read ended without a message: the peer closed (1, with its code and reason), an
    error (-1) or the time-out (-2)."""
    client = vu.client
    text, err = why_ended(client, result)
    if result.rc == -2:
        what = "matching message" if step.match is not None else "message"
        text = f"time-out: no {what} within {timeout_s:g}s"
        if skipped:
            text += f" ({skipped} other messages skipped)"
    outcome = finish(
        step,
        result.rc,
        None,
        text or f"read failed with rc {result.rc}",
        err.keyword if err else None,
        skipped_messages=skipped,
    )
    if result.rc == 1:
        outcome.closed = (result.close_code, result.close_reason)
    return outcome


def latency_from_schema(description: str) -> dict[str, Any]:
    """The schema of ``latency_from: {json, unit, id}`` (a read's, a receive's)."""
    return {
        "type": "object",
        "description": description,
        "properties": {
            "json": {
                "type": "string",
                "minLength": 1,
                "description": "JMESPath to the stamp: a number (or numeric string) since the epoch.",
            },
            "unit": {"enum": list(STAMP_UNITS), "description": "The stamp's unit (default ms)."},
            "id": {
                "type": "string",
                "minLength": 1,
                "description": "JMESPath to the message's id (unique in the run): counts its reach, "
                "how many reads got it and how long until the last one did.",
            },
        },
        "required": ["json"],
        "additionalProperties": False,
    }


_TIMEOUT = "Read time-out (default: defaults.read_timeout)."
_SCHEMA: dict[str, Any] = connection_step(
    "read",
    "Read one message (webSocketRead): rc 0 message, 1 peer closed, -1 error, -2 time-out.",
    "The connection to read from.",
    _TIMEOUT,
    expect="readExpect",
    body_extra={
        "match": {
            "$ref": "#/$defs/match",
            "description": "Wait for the first message satisfying this, skipping others.",
        },
        "latency_from": latency_from_schema(
            "Record the delivery latency: from the send time stamped in the message "
            "(sender's clock) to its parse here (this machine's wall clock)."
        ),
    },
    extra={
        "capture": {
            "$ref": "#/$defs/capture",
            "description": "Store parts of the message in variables for later steps.",
        }
    },
)

KIND = Kind(
    name="read",
    step=ReadStep,
    schema=_SCHEMA,
    parse=parse,
    execute=execute,
    message=True,
    answer=True,
    content=True,
    reads=True,
    summary="`read: main` or `read: {connection, timeout, match, latency_from}` | "
    "0 a message; 1 the peer closed; -1 error; -2 time-out",
)
