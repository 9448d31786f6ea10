"""One module per step kind, each with ``async def execute(step, vu) -> StepOutcome | int``.

``EXECUTE`` maps a step class to its module's ``execute``; adding a kind touches its module, this
table and the scenario schema. An ``int`` result is the per-message shortcut described in
``runner.steps.base``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from runner.scenario.model import (
    CloseStep,
    OpenStep,
    PingStep,
    ReadStep,
    RepeatStep,
    SleepStep,
    Step,
    WriteStep,
)
from runner.steps import close as _close
from runner.steps import open as _open
from runner.steps import ping as _ping
from runner.steps import read as _read
from runner.steps import repeat as _repeat
from runner.steps import sleep as _sleep
from runner.steps import write as _write
from runner.steps.base import StepOutcome

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser

__all__ = ["EXECUTE", "StepOutcome"]

#: Step class -> its module's ``execute``: the engine's per-step dispatch (a class hashes in C,
#: and there is no module attribute to look up per step).
EXECUTE: dict[type[Step], Callable[[Any, VirtualUser], Awaitable[StepOutcome | int]]] = {
    OpenStep: _open.execute,
    WriteStep: _write.execute,
    ReadStep: _read.execute,
    CloseStep: _close.execute,
    SleepStep: _sleep.execute,
    PingStep: _ping.execute,
    RepeatStep: _repeat.execute,
}
