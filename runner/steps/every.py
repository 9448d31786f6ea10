"""``every``: a block of steps repeated in the background, on an interval, alongside the steps
that follow it (a chat user who speaks every 2 s while reading the room)::

    - open: room
    - every:
        interval: 2s
        steps:
          - write: {connection: room, json: {from: "{{ vu }}", sent_at: "{{ now_ms() }}"}}
    - receive: {connection: room, for: 30s}
    - close: room

Rounds: the first starts at once and always runs, each next one ``interval`` after the previous
one started; rounds never overlap (one that takes longer than the interval delays the next, and
no burst catches up: the interval is a pace, not a promised rate). For a random gap, make a
drawn ``sleep`` the round's first step.

Scope: the background belongs to the block it is declared in (the iteration's steps, or one
round of a ``repeat``). It stops when the steps after it in that block have ended, or just before
any step of the user (in a ``parallel`` branch too) closes or opens again a connection it uses. A
round in flight then runs to its end (bounded by its steps' own time-outs), so every round is
whole and its steps are counted like any others. Between rounds nothing is in flight.

Failures: a failed round stops the background, and the block (so the iteration) fails when its
steps have ended; the main flow is not cut short. A failed main flow abandons the background:
its step in flight and the rest of its round count as skipped, and so do those of any
background or branch it started. The end of the run (its duration, Ctrl-C) cuts the step in
flight, counted as pending like the main flow's.

Measures: a background's writes do not start the main flow's response times (each flow has its
own asking writes); a read's latency still counts from the last write on its connection, whoever
made it (a background's, in a chat).

What the loader refuses, so that timing cannot decide a result (``runner.steps.sharing``):
``open`` and ``close`` in the background (open before the block, close after it); a connection
read (``read``, ``quiet``) both in the background and by the steps after it (two reads of one
connection at once take each other's messages); a variable (a capture, a ``repeat`` index) set
in one and set or used in the other; an ``every`` inside an ``every``; an ``every`` with no steps
after it. The background's drawn think times follow a sequence of their own, placed by its
lineage (``runner.engine.vu._Branch``), so ``--seed`` replays them whatever the interleaving.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User
from runner.steps.schema import duration, step_name
from runner.steps.sharing import walk

#: The shortest interval: a background of writes that never waits would flood the connection.
MIN_INTERVAL_S = 0.001


@dataclass(frozen=True, slots=True)
class EveryStep(StepBase):
    """Run ``steps`` every ``interval_s`` in the background while the steps after it run."""

    kind: ClassVar[str] = "every"

    interval_s: float = 1.0
    steps: tuple[StepBase, ...] = ()
    #: The connections the background's steps use: a step closing one stops it first.
    uses: frozenset[str] = field(default_factory=frozenset)

    def inner(self) -> tuple[StepBase, ...]:
        return self.steps


def parse(node: StepNode, ctx: StepParse) -> EveryStep:
    body, path = node.body, node.body_path
    interval = ctx.duration(body["interval"], (*path, "interval"))
    if interval < MIN_INTERVAL_S:
        ctx.problem(
            (*path, "interval"),
            f"an interval of {interval:g}s would repeat the block without pause; give at least 1ms "
            "(for a random gap, make a drawn sleep the block's first step)",
        )
    steps = ctx.block(body["steps"], (*path, "steps"), times=1, index=None)
    for step in walk(steps):
        if step.kind in ("open", "close"):
            ctx.problem(
                (*path, "steps"),
                f"'{step.kind}' on line {step.location.line} is inside 'every': the background cannot "
                f"open or close connections; open them before the block and close them after it",
            )
        elif step.kind == EveryStep.kind:
            ctx.problem(
                (*path, "steps"),
                f"'every' on line {step.location.line} is inside another 'every'; put both in the "
                "same block, one after the other",
            )
    uses = frozenset(c for s in walk(steps) if (c := getattr(s, "connection", "")))
    return EveryStep(
        name=ctx.name(node, "every"),
        location=node.location,
        expect=node.expect,
        interval_s=interval,
        steps=steps,
        uses=uses,
    )


async def execute(step: EveryStep, vu: User) -> StepOutcome:
    vu.start_background(partial(_rounds, step), step.uses)
    return StepOutcome(0, record=False)


async def _rounds(step: EveryStep, branch: User, stop: asyncio.Future[None]) -> int | None:
    """The background: rounds until ``stop`` is set (checked between rounds); the number of the
    round that failed, or None."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    round_ = 0
    while True:  # (the first round runs even when the steps after the block ended before it began)
        round_ += 1
        if await branch.run_steps(step.steps) is not None:
            return round_
        if stop.done():
            return None
        next_at += step.interval_s
        delay = next_at - loop.time()
        if delay <= 0:  # the round took longer than the interval: the next starts now, no catch-up
            next_at = loop.time()
            await asyncio.sleep(0)
        else:
            await asyncio.wait((stop,), timeout=delay)
        if stop.done():
            return None


KIND = Kind(
    name="every",
    step=EveryStep,
    schema={
        "type": "object",
        "description": "Repeat a block in the background, on an interval, while the steps after it run.",
        "properties": {
            "every": {
                "type": "object",
                "description": "The background block.",
                "properties": {
                    "interval": duration(
                        "From the start of one round to the start of the next (rounds never overlap)."
                    ),
                    "steps": {"$ref": "#/$defs/steps", "description": "The steps of one round."},
                },
                "additionalProperties": False,
                "required": ["interval", "steps"],
            },
            "name": step_name(),
        },
        "additionalProperties": False,
    },
    parse=parse,
    execute=execute,
    operation=False,
    alongside=True,
    summary="`every: {interval: 2s, steps: [...]}`: the block repeats in the background while the "
    "steps after it run; it stops when they end or close a connection it uses |",
)
