"""``repeat``: run a block of steps ``times`` times; the inner steps are recorded themselves.

With ``index: NAME`` the variable NAME holds the round number (0-based) for the block's steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.checks.expect import Failure
from runner.scenario.model import RepeatStep
from runner.steps.base import StepOutcome

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser


async def execute(step: RepeatStep, vu: VirtualUser) -> StepOutcome:
    failed_in = await vu.run_steps(step.steps, step.times, step.index)
    if failed_in is not None:
        return StepOutcome(0, failure=Failure(f"repeat stopped in round {failed_in}"), record=False)
    return StepOutcome(0, record=False)
