"""The run's one-second clock, shared by every place that acts once a second.

Progress, ``abort_on_fail``, worker snapshots and cluster shards all sample "just after each
second of the run ends" on the same grid (``start_ns + k s + 5 ms``), so their per-second buckets
line up; a late wake-up skips the seconds it missed instead of firing several times at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["each_second"]

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
