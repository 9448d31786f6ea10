"""The runtime a run lives in: its clocks and its signals, in one place.

``each_second``: the run's one-second clock, shared by every place that acts once a second;
``Alarm``: a precise wake-up (the open-model scheduler's and the health sampler's);
``on_stop_signals``: SIGINT/SIGTERM handed to whoever runs the scenario; ``utc_now_iso``: the
wall-clock time reports are stamped with.

Progress, ``abort_on_fail``, worker snapshots and cluster shards all sample "just after each
second of the run ends" on the same grid (``start_ns + k s + 5 ms``), so their per-second buckets
line up; a late wake-up skips the seconds it missed instead of firing several times at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

__all__ = ["STOP_SIGNALS", "Alarm", "each_second", "on_stop_signals", "utc_now_iso"]

_SECOND = 1_000_000_000
_AFTER = 5_000_000  # sample 5 ms after the second ends, once its last samples are in


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


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[int], Any]) -> Iterator[None]:
    """Call ``callback(signum)`` on SIGINT/SIGTERM while inside (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    installed: list[tuple[signal.Signals, Any]] = []
    for sig in STOP_SIGNALS:
        previous = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, callback, sig)
            installed.append((sig, previous))
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        yield
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            # asyncio puts SIG_DFL back; restore what was there (e.g. the --every loop's handler),
            # so a signal while reports are written does not kill the process outright.
            if previous is not None:
                signal.signal(sig, previous)
