"""``sleep``: wait; its latency is the time actually slept."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar

from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User, finish
from runner.steps.schema import duration, step_name


@dataclass(frozen=True, slots=True)
class SleepStep(StepBase):
    kind: ClassVar[str] = "sleep"

    duration_s: float = 0.0


def parse(node: StepNode, ctx: StepParse) -> SleepStep:
    return SleepStep(
        name=ctx.name(node, "sleep"),
        location=node.location,
        expect=node.expect,
        duration_s=ctx.duration(node.body, node.body_path),
    )


async def execute(step: SleepStep, vu: User) -> StepOutcome:
    started = vu.step_started_ns = time.monotonic_ns()
    await asyncio.sleep(step.duration_s)
    return finish(step, 0, time.monotonic_ns() - started)


KIND = Kind(
    name="sleep",
    step=SleepStep,
    schema={
        "type": "object",
        "description": "Wait (think time).",
        "properties": {"sleep": duration("How long to wait: 250ms, 1s, ..."), "name": step_name()},
        "additionalProperties": False,
    },
    parse=parse,
    execute=execute,
    operation=False,
    summary="`sleep: 250ms` | 0",
)
