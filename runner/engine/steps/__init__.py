"""One module per step kind, each with ``async def execute(step, vu) -> StepOutcome``.

``REGISTRY`` maps a ``StepKind`` to its module; adding a kind touches its module, this table and
the scenario schema.
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
from runner.engine.steps.base import StepModule, StepOutcome
from runner.model import (
    CloseStep,
    OpenStep,
    PingStep,
    ReadStep,
    RepeatStep,
    SleepStep,
    Step,
    StepKind,
    WriteStep,
)

if TYPE_CHECKING:
    from runner.engine.vu import VirtualUser

__all__ = ["EXECUTE", "REGISTRY", "StepOutcome", "execute_step"]

REGISTRY: dict[StepKind, StepModule] = {
    StepKind.OPEN: _open,  # type: ignore[dict-item]
    StepKind.WRITE: _write,  # type: ignore[dict-item]
    StepKind.READ: _read,  # type: ignore[dict-item]
    StepKind.CLOSE: _close,  # type: ignore[dict-item]
    StepKind.SLEEP: _sleep,  # type: ignore[dict-item]
    StepKind.PING: _ping,  # type: ignore[dict-item]
    StepKind.REPEAT: _repeat,  # type: ignore[dict-item]
}


#: Step class -> its module's ``execute``: the engine's per-step dispatch (a class hashes in C;
#: ``StepKind`` members hash through ``str``, and the module attribute is one more look-up).
EXECUTE: dict[type[Step], Callable[[Any, VirtualUser], Awaitable[StepOutcome]]] = {
    OpenStep: _open.execute,
    WriteStep: _write.execute,
    ReadStep: _read.execute,
    CloseStep: _close.execute,
    SleepStep: _sleep.execute,
    PingStep: _ping.execute,
    RepeatStep: _repeat.execute,
}


async def execute_step(step: Step, vu: VirtualUser) -> StepOutcome:
    """Run one step through its kind's module."""
    return await REGISTRY[step.kind].execute(step, vu)
