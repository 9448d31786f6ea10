"""The load generator watches itself: is a slow figure the server's, or ours?

``HealthSampler`` runs in every load-generating process, all run long, and records into the
run's ``RunRecorder.health`` (so worker deltas, shard reports and merges carry it like any other
figure):

- **event-loop lag**: a wake-up is set for every ``LAG_INTERVAL_NS`` (a ``clock.Alarm`` timerfd,
  nanosecond deadlines, where there is one) and the lateness of each is one sample. A message
  that reaches our socket while the loop is busy waits that long before it is parsed and timed,
  so the lag is latency the generator adds to every figure;
- **CPU**: the share of one core this process used in each second (``time.process_time_ns``);
- **send backlog**: connections whose send buffer is above its high-water mark (the peer or the
  network does not take what we write);
- **saturated seconds**: a second in which the CPU share reached ``SATURATED_CPU``, or in which
  the loop lagged ``LOOP_LAG_BOUND_S`` or more at its 90th percentile (a loop that is behind
  all second long, not one pause: a single GC pause or a preemption by another process on a
  shared machine delays a few samples and shows in the lag's maximum and p99, which are
  reported, but does not make its second saturated).

Cost: 100 wake-ups a second and one sample per second; nothing per message.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from runner.results.recorders import RunRecorder
from runner.runtime import Alarm

__all__ = ["LAG_INTERVAL_NS", "LOOP_LAG_BOUND_S", "SATURATED_CPU", "HealthSampler"]

#: How often the loop's lag is sampled.
LAG_INTERVAL_NS = 10_000_000
#: A second with a CPU share of one core at or above this is saturated (Locust warns at 90%).
SATURATED_CPU = 0.90
#: A sample over less time than this (the run's last, partial second) is not judged saturated.
MIN_JUDGED_NS = 500_000_000
#: A second whose loop lag is at or above this at its 90th percentile is saturated: latencies
#: measured while the loop is that far behind carry that much of the generator's own delay.
LOOP_LAG_BOUND_S = 0.010


class HealthSampler:
    """Sample this process's health into ``recorder.health.worker(name)`` (module docstring)."""

    __slots__ = (
        "_alarm",
        "_cpu_ns",
        "_due",
        "_lags",
        "_loop",
        "_timer",
        "_wall_ns",
        "name",
        "recorder",
        "send_blocked",
    )

    def __init__(self, recorder: RunRecorder, name: str, send_blocked: Callable[[], int]) -> None:
        self.recorder = recorder
        self.name = name
        self.send_blocked = send_blocked
        self._alarm: Alarm | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0
        self._lags: list[int] = []  # this second's samples (about 100)
        self._cpu_ns = 0
        self._wall_ns = 0

    def start(self) -> None:
        """Begin sampling on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._alarm = Alarm.create(self._loop, self._fire)
        self._cpu_ns, self._wall_ns = time.process_time_ns(), time.monotonic_ns()
        self._arm(self._wall_ns + LAG_INTERVAL_NS)

    def _arm(self, due: int) -> None:
        self._due = due
        if self._alarm is not None:
            self._alarm.arm(due)
        elif self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, (due - time.monotonic_ns()) / 1e9), self._fire)

    def _fire(self) -> None:
        now = time.monotonic_ns()
        lag = now - self._due if now > self._due else 0
        self.recorder.health.worker(self.name).lag.record_ns(lag)
        self._lags.append(lag)
        self._arm(now + LAG_INTERVAL_NS)

    def second(self, second: int) -> None:
        """Record the sample of ``second`` (the one just ended): CPU share since the last
        sample, the largest lag and the lag's 90th percentile since then, the send backlog now."""
        cpu, wall = time.process_time_ns(), time.monotonic_ns()
        elapsed = wall - self._wall_ns
        share = (cpu - self._cpu_ns) / elapsed if elapsed > 0 else 0.0
        # A sliver of a second (the run's last, partial one) says little about the generator:
        # its CPU share is recorded, but it cannot make its second saturated on that alone.
        judged = elapsed >= MIN_JUDGED_NS
        # The lag of a wake-up still overdue counts too: a loop blocked for seconds fires nothing.
        lags = self._lags
        lags.append(wall - self._due if wall > self._due else 0)
        lags.sort()
        lag_max, lag_p90 = lags[-1], lags[math.ceil(0.9 * len(lags)) - 1]  # nearest rank
        self._cpu_ns, self._wall_ns, self._lags = cpu, wall, []
        saturated = judged and (share >= SATURATED_CPU or lag_p90 >= LOOP_LAG_BOUND_S * 1e9)
        self.recorder.health.worker(self.name).seconds[second] = (
            round(share, 3),
            lag_max,
            self.send_blocked(),
            saturated,
        )

    def stop(self, last_second: int | None = None) -> None:
        """Stop sampling; with ``last_second``, record the partial second the run ended in."""
        if last_second is not None and self._wall_ns:
            self.second(last_second)
        if self._alarm is not None:
            self._alarm.close()
            self._alarm = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
