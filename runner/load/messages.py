"""The messages between the parent of a load run and its worker processes.

One frozen record per kind, picklable (they cross a ``multiprocessing`` Pipe), so both sides
match on the type instead of reading tuples by index; ``runner.load.workers`` describes the
protocol and ``runner.load.workers.RunState`` is the parent's pure reduction of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from runner.load.driver import Gauges
from runner.results.result import TlsInfo

__all__ = [
    "Delta",
    "Done",
    "Failed",
    "ParentMessage",
    "Ready",
    "Start",
    "Stop",
    "Tick",
    "WorkerInfo",
    "WorkerMessage",
]

#: What ``RunRecorder.take_interval()`` returns: everything recorded since the last delta, which
#: the parent adds to its total with ``RunRecorder.merge`` (the recorder owns that format).
Delta: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker knows only at its end."""

    max_active: int = 0  # the most users it had active at once
    stop_reason: str = ""  # why its engine stopped early ("" if it followed the plan to the end)
    tls: TlsInfo | None = None  # how certificates were treated; None: it never started
    #: Engines that ended themselves before the plan's end (a data file run out): (population,
    #: "" for a scenario's own engine; reason; when, monotonic ns).
    own_stops: tuple[tuple[str, str, int], ...] = ()
    #: A plan's: the most users each population had active at once (in the plan's order).
    population_max_active: tuple[int, ...] = ()


# --- worker -> parent ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The scenario is loaded; the worker waits for ``Start``."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Every second (and at once when a ``Stop`` arrives): the delta, and the gauges now."""

    delta: Delta
    gauges: Gauges = field(default_factory=Gauges)


@dataclass(frozen=True, slots=True)
class Done:
    """The worker's last delta; it ended on its own terms."""

    delta: Delta
    info: WorkerInfo = field(default_factory=WorkerInfo)


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker could not load or run the scenario; ``text`` says why (the run fails)."""

    text: str


WorkerMessage: TypeAlias = Ready | Tick | Done | Failed


# --- parent -> worker ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Follow the plan from ``start_ns`` on ``CLOCK_MONOTONIC`` (shared by every process)."""

    start_ns: int


@dataclass(frozen=True, slots=True)
class Stop:
    """End gracefully (a second ``Stop`` cancels in-flight iterations at once)."""

    reason: str


ParentMessage: TypeAlias = Start | Stop
