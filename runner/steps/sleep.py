"""``sleep``: wait; its latency is the time actually slept."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from runner.scenario.model import SleepStep, StepKind
from runner.steps.base import StepOutcome, finish

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser


async def execute(step: SleepStep, vu: VirtualUser) -> StepOutcome:
    started = vu.step_started_ns = time.monotonic_ns()
    await asyncio.sleep(step.duration_s)  # (not vu.sleep: one coroutine frame less per user)
    return finish(step, StepKind.SLEEP, 0, time.monotonic_ns() - started)
