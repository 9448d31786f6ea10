"""The runtime a run lives in: its clocks, its signals and the cyclic GC, in one place.

``each_second``: the run's one-second clock, shared by every place that acts once a second;
``Alarm``: a precise wake-up (the open-model scheduler's and the health sampler's);
``on_stop_signals``: SIGINT/SIGTERM handed to whoever runs the scenario, ``early_stop_signals``
the same before and after (no traceback, exit 130), ``children_start_deaf`` and ``ignore_sigint``
for worker processes; ``utc_now_iso``: the
wall-clock time reports are stamped with; ``quiet_gc``: short GC pauses while a load runs;
``lazy_module``: a library only some scenarios use, loaded when first used.

Progress, ``abort_on_fail``, worker snapshots and cluster shards all sample "just after each
second of the run ends" on the same grid (``start_ns + k s + 5 ms``), so their per-second buckets
line up; a late wake-up skips the seconds it missed instead of firing several times at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

__all__ = [
    "GC_THRESHOLDS",
    "STOP_SIGNALS",
    "Alarm",
    "children_start_deaf",
    "each_second",
    "early_stop_signals",
    "ignore_sigint",
    "lazy_module",
    "on_stop_signals",
    "quiet_gc",
    "request_stop",
    "utc_now_iso",
]

_SECOND = 1_000_000_000
_AFTER = 5_000_000  # sample 5 ms after the second ends, once its last samples are in


class _LazyModule:
    """Stands for module ``name`` until an attribute is read, then imports it (once) and reads
    it there. Not in ``sys.modules``: whoever imports the module directly gets the module."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            # The import system's lock on the module makes a second thread asking meanwhile
            # wait for the whole module (the standard ``LazyLoader`` of 3.11 hands it a half-run
            # one: shards of a cluster run, threads of one Dask worker, lost their regexes).
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


def lazy_module(name: str) -> Any:
    """Module ``name``, imported when one of its attributes is first read (from any thread), so
    a run whose scenario never uses it does not carry it. For ``regex`` and ``jmespath``
    (content checks, captures, ``that``), which a connection-holding run never touches: 1.7 MiB
    less resident memory once the engine is imported and the scenario loaded, and 11 ms less
    start-up (2026-12-05). Each attribute read costs a call more, so the hot paths keep what
    they compiled (``lru_cache``), not the module."""
    return _LazyModule(name)


async def each_second(start_ns: int, on_second: Callable[[], object]) -> None:
    """Call ``on_second()`` just after each whole second since ``start_ns`` (monotonic ns),
    until cancelled. Seconds before ``start_ns`` (a start in the future) are not reported."""
    k = 1
    while True:
        delay = (start_ns + k * _SECOND + _AFTER - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic_ns()
        k = max(k + 1, (now - start_ns) // _SECOND + 1)
        if now >= start_ns:
            on_second()


class Alarm:
    """A one-shot wake-up at an absolute monotonic time with nanosecond precision (Linux).

    Event-loop timers count whole milliseconds (uvloop rounds the delay; asyncio's selector
    rounds its time-out up), so a start scheduled by them is up to ~0.5 ms off even on an idle
    loop. A ``timerfd`` on ``CLOCK_MONOTONIC`` (the clock of ``time.monotonic_ns``) armed for
    the exact deadline becomes readable then, and the loop's poll wakes for it like for a
    socket: no spinning, no rounding. Made through ``ctypes`` (``os.timerfd_create`` is Python
    3.13+); ``Alarm.create`` returns None where that is not available, and the caller keeps
    the loop's timers.

    Measured with ``bench/bench_open_model.py --rate 2700 --seconds 6`` (quiet runs, starts
    less than 0.5 ms apart grouped, see ``engine.EARLY_NS``): schedule lag p50 0.01 ms, p90
    0.01 ms, p99 0.17-0.32 ms, against 0.13-0.17 / 1.0 / 1.4 ms with the loop's millisecond
    timers. The price is more wake-ups of the process from idle: the client used 64% of its
    core instead of 52% at 2,700 starts/s, 84% instead of 72% at 3,621/s. At rates where the
    loop never sleeps the scheduler is behind or on time without waiting.
    """

    __slots__ = ("_arm", "_fd", "_loop", "_spec")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, arm: Callable[..., int]) -> None:
        self._loop = loop
        self._fd = fd
        self._arm = arm
        self._spec = _itimerspec()

    @classmethod
    def create(cls, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> Alarm | None:
        """An alarm that calls ``callback()`` from ``loop`` when it goes off; None if timerfd
        is not available here."""
        if sys.platform != "linux":
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            create, arm = libc.timerfd_create, libc.timerfd_settime
            create.argtypes = [ctypes.c_int, ctypes.c_int]
            arm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_itimerspec), ctypes.c_void_p]
            fd = create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd < 0:
                return None
        except (OSError, AttributeError):
            return None
        alarm = cls(loop, fd, arm)

        def ready() -> None:
            try:
                os.read(fd, 8)  # the expiry count; reading re-arms readiness
            except BlockingIOError:
                return
            callback()

        try:
            loop.add_reader(fd, ready)
        except (NotImplementedError, OSError):
            os.close(fd)
            return None
        return alarm

    def arm(self, deadline_ns: int) -> None:
        """Go off at ``deadline_ns`` (``time.monotonic_ns()`` scale), at once if it is past;
        replaces an earlier deadline."""
        deadline_ns = max(deadline_ns, 1)  # an all-zero time disarms a timerfd
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(deadline_ns, _SECOND)
        if self._arm(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) < 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def close(self) -> None:
        """Stop watching and release the descriptor (idempotent)."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _timespec), ("it_value", _timespec)]


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _EarlySignals:
    """The process's SIGINT/SIGTERM handler outside a run (``early_stop_signals``)."""

    def __init__(self) -> None:
        self.run_began = False  # set by on_stop_signals: reports are what is left to do
        self.received = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.received += 1
        if not self.run_began or self.received > 1:
            raise KeyboardInterrupt
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("wsload: writing the reports of what was measured (signal again to abandon)\n")


_early = _EarlySignals()


def early_stop_signals() -> None:
    """SIGINT and SIGTERM before any run (imports, parsing, loading, spawning workers) end
    wsload as an interrupt (``KeyboardInterrupt``: exit 130 with one line, no traceback; SIGTERM
    would otherwise kill it with 143 and nothing said); after a run, the first signal lets the
    reports of what was measured be written and a second abandons them. The run's own handlers
    (``on_stop_signals``) take over while it runs."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, _early)


@contextlib.contextmanager
def children_start_deaf() -> Iterator[None]:
    """Processes started inside begin life with SIGINT blocked (a signal mask survives fork and
    exec), so a Ctrl-C sent to the process group while they import is held until they ignore it
    (``ignore_sigint``) instead of printing a ``KeyboardInterrupt`` traceback from a bootstrap;
    this process gets its own, held meanwhile, when the block ends. The spawn method's resource
    tracker is started first: starting it unblocks SIGINT (it uses the same trick for itself)."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_sigint() -> None:
    """A worker's first act: ignore SIGINT (the parent decides and forwards a stop), then drop
    the block it was started with (``children_start_deaf``); one held meanwhile is discarded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


#: The runs inside ``on_stop_signals`` now, innermost last: what ``request_stop`` stops.
_stoppers: list[tuple[asyncio.AbstractEventLoop, Callable[[int], Any]]] = []


def request_stop() -> None:
    """Stop as Ctrl-C does, from any thread (the dashboard's stop button): the running run's
    own SIGINT handling (graceful stop, complete report, interrupted), or between runs (the
    ``--every`` loop) a SIGINT to this process, which that loop handles."""
    if _stoppers:
        loop, callback = _stoppers[-1]
        loop.call_soon_threadsafe(callback, signal.SIGINT)
    else:
        signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[int], Any]) -> Iterator[None]:
    """Call ``callback(signum)`` on SIGINT/SIGTERM while inside (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    _early.run_began = True
    installed: list[tuple[signal.Signals, Any]] = []
    for sig in STOP_SIGNALS:
        previous = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, callback, sig)
            installed.append((sig, previous))
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    _stoppers.append((loop, callback))
    try:
        yield
    finally:
        _stoppers.remove((loop, callback))
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            # asyncio puts SIG_DFL back; restore what was there (e.g. the --every loop's handler),
            # so a signal while reports are written does not kill the process outright.
            if previous is not None:
                signal.signal(sig, previous)


#: Cyclic-GC thresholds during a load run (see ``quiet_gc``): a young collection every 700 net
#: new container objects, every second one also of generation 1, a full one practically never.
GC_THRESHOLDS = (700, 0, 10_000)

_gc_lock = threading.Lock()
_gc_depth = 0  # quiet_gc blocks active in this process (engines of cluster shards may overlap)
_gc_saved = GC_THRESHOLDS


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Keep cyclic-GC pauses short while the load runs: freeze the set-up, collect young often.

    A GC pause stops the event loop, so it shows up as schedule lag (open model) and as latency
    of whatever was in flight. A collection's pause is proportional to the objects it scans:

    - ``gc.collect(1)`` then ``gc.freeze()`` at the start: everything that exists before the run
      (modules, the scenario, recorders, the engine) moves to the permanent generation, which
      no collection scans; a rare full collection then scans only objects of the run. Not a
      full ``gc.collect()``: after the bench's closed-loop probe in the same process it took
      ~230 ms, longer than the lead before the start, and the first 0.23 s of starts were
      late (lag max 230-270 ms, 850 starts dropped at max_vus).
    - (700, 0, 10_000): generation 1 is collected at every second young collection, so it never
      holds more than two young cycles' survivors instead of ten (CPython's default and the
      previous setting (700, 10, 10_000): 12,000-14,000 objects). Measured in the open-model
      bench (2,700 starts/s, 1,000 connections; ``gc.callbacks``): generation-1 pauses 0.2-0.4
      ms at p90 and 1.6 ms at most, instead of 1.4 ms median, 3-6 ms at p90 and up to 12 ms (the
      cause of the lag p99 of 3-5 ms). Objects that live as long as a connection (hundreds of
      ms) reached generation 2 with either setting, so the total work is no larger: it halved
      (0.23 instead of 0.38-0.47 s of GC per 12 s run: fewer rescans of generation 1).
      Full collections stay practically absent during a run.

    Memory stays bounded: only objects that existed at the start are frozen, a fixed set, and
    frozen objects are still freed by reference counting as usual; garbage cycles among them
    (old garbage a full collection would have found) are merely kept until the end, when
    ``gc.unfreeze()`` hands them back to the oldest generation: at most what the process
    held at the start, however long the run. Everything created during
    the run is collected normally: young cycles within two young collections, older ones by
    the full collection that CPython still makes after 10,000 generation-1 collections (minutes
    at thousands of iterations per second) once they are a quarter of the old objects. Nothing
    is frozen while the run goes on, so a long run cannot pile up uncollectable cycles.
    Nested or overlapping blocks (engines of several shards in one process) share one setting;
    the last to end restores the old thresholds. (Not re-measured with this setting: the shape
    of 5,000 users holding mostly idle connections, where (700, 10, 10_000) had given a loop
    stall p99 of 1.0 ms and no full collection.)
    """
    global _gc_depth, _gc_saved
    with _gc_lock:
        _gc_depth += 1
        if _gc_depth == 1:
            _gc_saved = gc.get_threshold()
            gc.collect(1)  # the young only: a full collection of a big heap took ~230 ms
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0:
                gc.unfreeze()
                gc.set_threshold(*_gc_saved)
