"""``repeat``: run a block of steps ``times`` times; the inner steps are recorded themselves.

With ``index: NAME`` the variable NAME holds the round number (0-based) for the block's steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.engine.steps.base import StepOutcome
from runner.expect import Failure
from runner.model import RepeatStep

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser


async def execute(step: RepeatStep, vu: VirtualUser) -> StepOutcome:
    index = step.index
    variables = vu.variables
    run_steps = vu.run_steps
    steps = step.steps
    for i in range(step.times):
        if index is not None:
            variables[index] = i
        if not await run_steps(steps):
            return StepOutcome(0, failure=Failure(f"repeat stopped in round {i + 1}"), record=False)
    return StepOutcome(0, record=False)
