"""``repeat``: run a block of steps ``times`` times; the inner steps are recorded themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.engine.steps.base import StepOutcome
from runner.expect import Failure
from runner.model import RepeatStep

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser


async def execute(step: RepeatStep, vu: VirtualUser) -> StepOutcome:
    for i in range(step.times):
        if not await vu.run_steps(step.steps):
            return StepOutcome(0, failure=Failure(f"repeat stopped in round {i + 1}"), record=False)
    return StepOutcome(0, record=False)
