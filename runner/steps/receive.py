"""``receive``: a streaming read. It takes messages for a while (``for``) or until ``count``
matching ones came (or both: whichever comes first), checking each; rc 0 it ended as asked, 1
the peer closed, -1 error, -2 too few messages in time.

- ``count`` only: the whole wait is bounded by ``timeout`` (default ``defaults.read_timeout``),
  as a read's time-out covers its whole wait; fewer than ``count`` by then is -2
  (``time-out: 37 of 100 messages within 10s``).
- ``for`` only: messages are taken for that long; rc 0 however many came (thresholds on
  ``STEP.received`` and ``STEP.received_per_s`` judge the count). ``timeout`` is refused with
  ``for``: the receive ends at ``for``.
- both: rc 0 at ``count`` messages, -2 at ``for`` with fewer.

``match`` selects: other messages are skipped (``skipped_messages``). Every matching message is
checked against ``expect``'s content checks; the first that fails them fails the step at once.
``latency_from`` records each message's delivery latency (as a read's; a message without a stamp
fails the step). Messages received before the step ended count however it ended (a close
mid-stream, a failed check, the end of the run).

Each message that matched and passed its checks goes to the user's ``received`` (the engine counts
it in the step's ``received``, records its delivery latency, and counts it in the per-second
messages of the second it arrived in). The step's own latency is how long the receive lasted,
from its start to its last message (``count`` reached) or to the end of its window.

A receive cut by the end of a run is pending like any step, but the wait it reports is from its
last message (or its start): the time it had gone without one (``runner.results.verdict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from time import monotonic_ns
from typing import Any, ClassVar

from runner.checks.expect import Failure, Message, check_content, describe, match_json_fields
from runner.client.codes import ReadResult
from runner.scenario.model import Matcher, StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User, finish, not_open
from runner.steps.read import Stamp, latency_from_schema, parse_stamp, wall_ns, why_ended
from runner.steps.schema import duration, step_name


@dataclass(frozen=True, slots=True)
class ReceiveStep(StepBase):
    kind: ClassVar[str] = "receive"

    connection: str = ""
    for_s: float | None = None  # take messages for this long
    count: int | None = None  # ... or until this many matching ones came
    timeout_s: float | None = None  # count only: the whole wait (None: defaults.read_timeout)
    match: Matcher | None = None
    latency_from: Stamp | None = None


def parse(node: StepNode, ctx: StepParse) -> ReceiveStep:
    connection = ctx.connection(node, "uses")
    opts = node.body if isinstance(node.body, dict) else {}
    path = node.body_path
    for_s = ctx.duration(opts["for"], (*path, "for")) if "for" in opts else None
    if for_s is not None and for_s <= 0:
        ctx.problem((*path, "for"), "for: a receive takes messages for more than 0s")
    count = opts.get("count")
    if "for" not in opts and "count" not in opts:
        ctx.problem(path, "a receive needs 'for' (how long to take messages), 'count' (how many), or both")
    timeout_s = ctx.timeout(node)
    if "for" in opts and "timeout" in opts:
        ctx.problem(
            (*path, "timeout"),
            "timeout: a receive with 'for' ends at 'for'; 'timeout' bounds a receive with 'count' only",
            key=True,
        )
    return ReceiveStep(
        name=ctx.name(node, f"receive {connection}"),
        location=node.location,
        expect=node.expect,
        connection=connection,
        for_s=for_s,
        count=count if isinstance(count, int) else None,
        timeout_s=timeout_s,
        match=ctx.content(opts["match"], (*path, "match")) if "match" in opts else None,
        latency_from=parse_stamp(opts["latency_from"], (*path, "latency_from"), ctx)
        if "latency_from" in opts
        else None,
    )


async def execute(step: ReceiveStep, vu: User) -> StepOutcome | int:
    sock = vu.sockets.get(step.connection)
    if sock is None:
        return not_open(step, step.connection)
    client = vu.client
    window_s = step.for_s
    if window_s is None:
        window_s = step.timeout_s if step.timeout_s is not None else vu.ctx.scenario.read_timeout_s
    now = started = vu.step_started_ns = monotonic_ns()
    deadline = started + int(window_s * 1e9)
    wanted = step.count or 0  # 0: no count, the window ends it
    match = step.match
    fields = match.json_fields if match is not None else None
    content = step.expect.content
    stamp = step.latency_from
    variables = vu.variables
    received = vu.received
    taken = skipped = 0
    # The per-message path: one loop, no object but the client's ``ReadResult`` (and a
    # ``Message`` when content or a stamp is looked at) per message.
    while True:
        if now >= deadline:  # a busy stream keeps the buffer full: the window must still end
            result = ReadResult(-2)
        else:
            result = await client.read(sock, (deadline - now) / 1e9)
        if result.rc != 0:
            return _ended(step, vu, result, window_s, taken, skipped, monotonic_ns() - started)
        data = result.data if result.data is not None else ""
        if match is not None:
            hit = match_json_fields(fields, data, variables) if fields is not None else None
            if hit is None:  # undecided by the shortcut (see ``runner.steps.read``)
                try:
                    hit = check_content(match, Message(data), variables) is None
                except Exception as exc:
                    return _failed(step, Failure(f"match: {exc}", "", describe(data)), started, skipped)
            if not hit:
                skipped += 1
                now = monotonic_ns()
                continue
        delivery = None
        message_id = None
        if content is not None or stamp is not None:
            message = Message(data)
            if content is not None:
                try:
                    failure = check_content(content, message, variables)
                except Exception as exc:
                    failure = Failure(f"expect: {exc}", "", describe(data))
                if failure is not None:
                    return _failed(step, failure, started, skipped)
            if stamp is not None:
                taken_from = stamp.taken(message)
                if isinstance(taken_from, Failure):
                    return _failed(step, taken_from, started, skipped)
                sent, message_id = taken_from
                delivery = wall_ns(result.received_ns) - sent
        received(step, result.received_ns or monotonic_ns(), delivery, message_id)
        taken += 1
        now = monotonic_ns()
        if taken == wanted:
            if skipped or not step.expect.outcome_default:
                return finish(step, 0, now - started, skipped_messages=skipped)
            return now - started  # passed, default success: the shortcut (``runner.steps.base``)


def _failed(step: ReceiveStep, failure: Failure, started: int, skipped: int) -> StepOutcome:
    """A message failed its checks (or had no stamp): the step fails at once."""
    return finish(step, 0, monotonic_ns() - started, content_failure=failure, skipped_messages=skipped)


def _ended(
    step: ReceiveStep, vu: User, result: ReadResult, window_s: float, taken: int, skipped: int, lasted: int
) -> StepOutcome:
    """The stream ended before ``count``: the window passed (rc 0 without a count, else -2), the
    peer closed (1, with its code and reason) or an error (-1)."""
    client = vu.client
    other = f", {skipped} other messages skipped" if skipped else ""
    if result.rc == -2:
        if step.count is None:
            return finish(step, 0, lasted, skipped_messages=skipped)
        what = "matching messages" if step.match is not None else "messages"
        timed_out = f"time-out: {taken} of {step.count} {what} within {window_s:g}s{other}"
        return finish(step, -2, lasted, timed_out, skipped_messages=skipped)
    text, err = why_ended(client, result)
    text = f"{text or f'receive failed with rc {result.rc}'} after {taken} messages{other}"
    outcome = finish(step, result.rc, lasted, text, err.keyword if err else None, skipped_messages=skipped)
    if result.rc == 1:
        outcome.closed = (result.close_code, result.close_reason)
    return outcome


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Take messages for a while or until a count (a stream): rc 0 as asked, 1 the peer "
    "closed, -1 error, -2 too few messages in time.",
    "properties": {
        "receive": {
            "type": "object",
            "description": "Which connection, for how long and/or how many messages, and which.",
            "properties": {
                "connection": {
                    "$ref": "#/$defs/connectionName",
                    "description": "The connection to use; may be left out when only one is declared.",
                },
                "for": duration("Take messages for this long (rc 0 however many came, unless count)."),
                "count": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Take messages until this many matching ones came (-2 if fewer in time).",
                },
                "timeout": duration(
                    "With count only: the whole wait (default: defaults.read_timeout). Not with for."
                ),
                "match": {
                    "$ref": "#/$defs/match",
                    "description": "Take only messages satisfying this; others are skipped.",
                },
                "latency_from": latency_from_schema(
                    "Record each message's delivery latency: from the send time stamped in it "
                    "(sender's clock) to its parse here (this machine's wall clock)."
                ),
            },
            "additionalProperties": False,
        },
        "name": step_name(),
        "expect": {
            "$ref": "#/$defs/readExpect",
            "description": "What the step's outcome must be; content checks apply to every message taken.",
        },
    },
    "additionalProperties": False,
}

KIND = Kind(
    name="receive",
    step=ReceiveStep,
    schema=_SCHEMA,
    parse=parse,
    execute=execute,
    reads=True,
    content=True,
    summary="`receive: {connection, for: 30s, count: 100, timeout, match, latency_from}` | "
    "0 as asked (count reached, or the end of `for`); 1 the peer closed; -1 error; -2 fewer than "
    "`count` in time",
)
