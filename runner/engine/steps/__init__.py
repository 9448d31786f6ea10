"""One module per step kind, each with ``async def execute(step, vu) -> StepOutcome | int``.

``EXECUTE`` maps a step class to its module's ``execute``; adding a kind touches its module, this
table and the scenario schema. An ``int`` result is the per-message shortcut described in
``runner.engine.steps.base``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from runner.engine.steps import close as _close
from runner.engine.steps import open as _open
from runner.engine.steps import ping as _ping
from runner.engine.steps import read as _read
from runner.engine.steps import repeat as _repeat
from runner.engine.steps import sleep as _sleep
from runner.engine.steps import write as _write
from runner.engine.steps.base import StepOutcome
from runner.model import CloseStep, OpenStep, PingStep, ReadStep, RepeatStep, SleepStep, Step, WriteStep

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
