"""One process's share of a load run: follows the pure plan (``runner.scenario.plan``) in time.

``LoadEngine`` runs shard ``shard`` of ``shards`` on the running event loop:

- closed model: the target VU count of ``closed_plan`` (this shard's share of it, ``shard_count``)
  is met by starting and retiring user tasks; each user loops over iterations (those of
  ``VirtualUser.run_iteration``, think time in between) until the plan ends, the user is
  retired, or its ``iterations`` are done;
- open model: a chain of timer callbacks walks this shard's ``shard_starts`` of ``open_starts``,
  waking at each intended time (a timerfd ``clock.Alarm``, else the loop's millisecond timers)
  and making the starts already due in one go (up to ``BATCH``); each start takes an idle
  user from the pool (or creates one up to ``max_vus``) or is counted as dropped. The iteration
  latency is measured from the *intended* start, so a late start is not hidden.

The end is graceful: no new iterations, those in flight may finish within ``graceful_stop_s``,
then they are cancelled and every connection is closed. ``stop(reason)`` does the same early
(signals, a lost ``abort_on_fail`` threshold, the parent of a worker).

VU numbers are global across shards (shard's j-th user is ``j * shards + shard + 1``), so
``{{ vu }}`` is unique in a multi-process run and ``shards=1`` gives 1, 2, 3, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from array import array
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING

from runner.engine.data import DataExhausted
from runner.engine.vu import RunContext, VirtualUser
from runner.load.limits import default_max_vus
from runner.runtime import Alarm, quiet_gc
from runner.scenario.model import LoadSpec
from runner.scenario.plan import closed_changes, open_starts, shard_count, shard_starts

if TYPE_CHECKING:
    from runner.client import WebSocketClient

__all__ = ["LoadEngine"]

#: Starts made in one go before yielding to the loop when the scheduler is behind.
BATCH = 256
#: Closed model: users started before yielding to the loop. A start of thousands of users at once
#: (no ramp) made every new user's first step (socket, bind, connect) run in one turn of the
#: loop: in a 50,000-user run on one core with crowded source ports that turn lasted minutes, so
#: a worker sent no per-second delta and did not see the stop, and was killed with everything it
#: had measured. Between batches the once-a-second clock, the parent's pipe and ``stop`` run.
START_BATCH = 64
#: A start due within this many nanoseconds is made now rather than after another wait, so a
#: start is made at most this early. With the loop's timers (1 ms resolution) that is half their
#: resolution. With the precise ``Alarm`` it also groups starts less than this apart into one
#: wake-up of the process: at 3,621 starts/s a wake-up per start (20 us) cost the client ~26% of
#: its core (93% instead of 67%: waking from idle is costly on this virtual machine), 0.5 ms
#: ~13% (84%), with lag p99 0.4-0.6 ms either way (``bench/bench_open_model.py``).
EARLY_NS = 500_000


def wait_s(intended_ns: int, now_ns: int) -> float:
    """The timer delay (seconds) for the next start: the time left rounded to whole milliseconds.

    Event loops keep timers at millisecond resolution. uvloop (libuv) rounds the delay to whole
    milliseconds: an idle loop then polls for exactly that many milliseconds (the timer fires
    ``k`` ms after now, measured: +0.07 ms); a busy one fires it at the first turn once its
    clock, the monotonic clock truncated to the millisecond, reaches now's millisecond + ``k``
    (up to 1 ms sooner). Rounding the time left puts the wake-up within half a millisecond of
    the start in the first case and early in the second; a start at most ``EARLY_NS`` away is
    then made at once, one further away is waited for again. (Spinning through the last
    fraction of a millisecond with zero-delay timers would be exact but kept the client core
    100% busy at any rate: 97% of the core instead of 65% at 2,700 starts/s.)
    """
    return round((intended_ns - now_ns) / 1_000_000) / 1000


def failure_pause(failed_in_a_row: int, first_s: float = 0.05, most_s: float = 1.0) -> float:
    """How long a closed-model user pauses after ``failed_in_a_row`` failed iterations (0: none):
    ``first_s``, doubled per further failure in a row, at most ``most_s`` (``load.failure_pause``;
    default 50 ms up to 1 s; 0 turns it off). A passed iteration resets it.

    Without it a user whose open is refused at once loops as fast as the CPU allows: thousands of
    failed iterations a second that measure nothing but our own loop, and a flood of connection
    attempts at a server that is already down. Every failure is still counted, the pauses are
    counted too (how many, how long in all, users pausing per second), and a recovering server
    is seen within ``most_s``.
    """
    if failed_in_a_row <= 0 or most_s <= 0:
        return 0.0
    return min(most_s, first_s * 2.0 ** min(failed_in_a_row - 1, 16))


class LoadEngine:
    """Run this process's shard of ``ctx.scenario.load`` (see the module docstring)."""

    def __init__(
        self,
        ctx: RunContext,
        *,
        start_ns: int,
        shard: int = 0,
        shards: int = 1,
        source_addresses: tuple[str, ...] = (),
        client_factory: Callable[[], WebSocketClient] | None = None,
    ) -> None:
        load = ctx.scenario.load
        assert load is not None
        self.ctx = ctx
        self.load: LoadSpec = load
        self.start_ns = start_ns
        self.shard = shard
        self.shards = shards
        if ctx.data is not None:  # this process's turn along the data files (runner.engine.data)
            ctx.data.shard, ctx.data.shards = shard, shards
        self.addresses = source_addresses
        #: The client all this engine's users share when it made it (no ``client_factory``):
        #: then its counts are this engine's, read each second without a walk over every user.
        self._own_client: WebSocketClient | None = None
        if client_factory is None:
            # One client for the engine, not one per user (~0.8 KiB less per user): its
            # socket table is keyed by socket numbers no user shares, and ``last_error()`` is
            # read by a step right after the failing call returns, with no await in between, so
            # no other user's error can come between.
            from runner.client import WebSocketClient

            shared = self._own_client = WebSocketClient()

            def client_factory() -> WebSocketClient:
                return shared

        self._client = client_factory
        self.stop_reason = ""
        self.stopping = False
        self.stopped_at_ns: int | None = None  # when ``stop`` came (not the plan's own end)
        self.max_active = 0
        self.busy: set[VirtualUser] = set()  # users inside an iteration (open) / running (closed)
        self._tasks: set[asyncio.Task[None]] = set()
        #: The one context every user's task and its done-callback run in, instead of a copy of
        #: the current one each (two 64-byte contexts per user; wsload sets no context variable).
        self._context = contextvars.copy_context()
        self._on_done = self._task_done  # one bound method, not one per user
        #: Closed model: slot j -> the user started in it (``_closed``, ``_retired``).
        self._slots: list[VirtualUser] = []
        self._limit = load.iterations if load.iterations is not None else math.inf
        #: Closed model: a user's iterations start this far apart (0: no pace; a pace under
        #: 1 ns is none).
        self._pace_ns = int(load.pace_s * 1e9) if load.pace_s else 0
        self._wake: asyncio.Event | None = None
        self._main: asyncio.Task[None] | None = None
        self._gauge_vus = 0
        self._pausing = 0  # closed-model users in their pause after a failed iteration
        self._no_more_growth = False
        self.max_vus_created = 0

    # --- what progress and the coordinator read --------------------------------------------

    def gauges(self) -> tuple[int, int, int]:
        """(active virtual users, open connections, users pausing after a failed iteration)
        right now in this process."""
        vus = self._gauge_vus if self.load.model == "closed" else len(self.busy)
        if self._own_client is not None:
            # Its count, not a walk over the users: at 16,000 held connections the two walks
            # each second were 21 ms of a worker's loop, and six workers on one core stalled
            # together (loop lag p99 150 ms, measured on the 100,000-connection hold).
            return vus, self._own_client.open_sockets, self._pausing
        conns = 0
        for vu in self.busy:
            conns += len(vu.sockets)
        return vus, conns, self._pausing

    def send_blocked(self) -> int:
        """Connections of this process whose send buffer is above its high-water mark."""
        if self._own_client is not None:
            return self._own_client.send_blocked
        blocked = 0
        for vu in self.busy:
            client = vu.client
            for sock in vu.sockets.values():
                if client.write_paused(sock):
                    blocked += 1
        return blocked

    # --- control -------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Stop starting iterations; in-flight ones get ``graceful_stop_s``. A second stop
        after the first (a second Ctrl-C) cancels them at once."""
        if self.stopping:
            if reason.startswith("interrupted") and self.stop_reason.startswith("interrupted"):
                for task in self._tasks:
                    task.cancel()
            return
        self.stopping = True
        self.stop_reason = reason
        self.stopped_at_ns = time.monotonic_ns()
        if self._wake is not None:
            self._wake.set()
        if self._main is not None and self.load.model == "open":
            self._main.cancel()

    def _user(self, j: int) -> VirtualUser:
        vu_id = j * self.shards + self.shard + 1
        addr = self.addresses[(vu_id - 1) % len(self.addresses)] if self.addresses else None
        return VirtualUser(self.ctx, self._client(), vu_id, source_address=addr)

    async def run(self) -> None:
        """Follow the plan from ``start_ns`` to its end (or ``stop``), then end gracefully."""
        self._wake = asyncio.Event()
        # The GC set-up (a full collection) before the start, not in the first starts' time.
        with quiet_gc():
            delay = (self.start_ns - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            body = self._closed() if self.load.model == "closed" else self._open()
            self._main = asyncio.ensure_future(body)
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
            self.stopping = True
            await self._graceful_end()

    async def _graceful_end(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(self.load.graceful_stop_s, 0.0))
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for vu in list(self.busy):
            await vu.close_all()
        self.busy.clear()

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        # One name for every user's task: asyncio otherwise makes a "Task-<n>" string for each
        # (56 bytes per held user, tracemalloc).
        task = asyncio.get_running_loop().create_task(coro, name="wsload user", context=self._context)
        self._tasks.add(task)
        task.add_done_callback(self._on_done, context=self._context)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks and self._wake is not None:
            self._wake.set()
        if not task.cancelled() and task.exception() is not None and not self.stopping:
            # A crash of the engine itself (not a step's failure): stop, keep what was measured.
            self.stop(f"internal error: {self.ctx.recorder.mask(repr(task.exception()))}")

    async def _sleep_until(self, at_s: float) -> None:
        """Sleep until ``at_s`` after the start, waking early on ``stop`` or when every user is
        done (checked by the caller)."""
        assert self._wake is not None
        deadline = self.start_ns + int(at_s * 1e9)
        while not self.stopping:
            left = (deadline - time.monotonic_ns()) / 1e9
            if left <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
            if self._all_done():
                return

    # --- closed model ---------------------------------------------------------------------------

    def _all_done(self) -> bool:
        return self.load.iterations is not None and not self._tasks and self._no_more_growth

    async def _closed(self) -> None:
        # The plan as arrays (``closed_changes``): change i is due ``at_s[i]`` seconds after the
        # start, with the target ``targets[i]``.
        at_s, targets = array("d"), array("q")
        for change in closed_changes(self.load):
            at_s.append(change.at_s)
            targets.append(change.vus)
        # slot j -> the user started in it; slots started in order, given up from the top
        slots = self._slots
        self._no_more_growth = False
        # growth_after[i]: the largest target after change i (a suffix maximum, O(n): a ramp to
        # 20,000 users is 20,000 changes)
        growth_after = array("q", [0]) * len(targets)
        for i in range(len(targets) - 2, -1, -1):
            growth_after[i] = max(growth_after[i + 1], targets[i + 1])
        for i in range(len(targets)):
            await self._sleep_until(at_s[i])
            if self.stopping or self._all_done():
                break
            target = shard_count(targets[i], self.shard, self.shards)
            # A start still going when the next change is due (a generator too busy to start
            # its users in time) ends there: the plan moves on (at its end, to no users) instead
            # of starting users past the duration. 8,000 users of 10 ms sleeps in a 1 s run went
            # on starting for 4 s; 15,000 for 24 s.
            next_due = self.start_ns + int(at_s[i + 1] * 1e9) if i + 1 < len(at_s) else None
            while len(slots) < target:
                vu = self._user(len(slots))
                slots.append(vu)
                self._spawn(self._user_loop(vu))
                if len(slots) % START_BATCH == 0 and len(slots) < target:
                    # A mass start (no ramp): let the users just started run their first steps
                    # and the loop's timers and pipes their turn before starting more (see
                    # START_BATCH); a stop arriving meanwhile ends the start here.
                    await asyncio.sleep(0)
                    if self.stopping or (next_due is not None and time.monotonic_ns() >= next_due):
                        break
            if self.stopping:
                break
            del slots[target:]  # those users end after their iteration (``_retired``)
            self._no_more_growth = shard_count(growth_after[i], self.shard, self.shards) <= len(slots)
        else:
            if targets and targets[-1] != 0:  # bounded by iterations only: wait for the users
                self._no_more_growth = True
                while self._tasks and not self.stopping:
                    assert self._wake is not None
                    self._wake.clear()
                    await self._wake.wait()

    def _retired(self, vu: VirtualUser) -> bool:
        """Whether the plan gave up ``vu``'s slot (it went below it), for good: a slot filled
        again holds a new user. Derived from the slot list, not a flag object per user (64
        bytes each, tracemalloc)."""
        j = (vu.id - 1 - self.shard) // self.shards  # ``_user``'s numbering, reversed
        slots = self._slots
        return j >= len(slots) or slots[j] is not vu

    async def _user_loop(self, vu: VirtualUser) -> None:
        # Few locals: every held user keeps this frame (8 bytes a local); the load settings are
        # read once per iteration instead.
        self.busy.add(vu)
        self._gauge_vus += 1
        self.max_active = max(self.max_active, self._gauge_vus)
        try:
            failed_in_a_row = 0
            due = 0  # with a pace: when this user's next iteration is due (0: the first's start)
            while not self.stopping and not self._retired(vu) and vu.iteration < self._limit:
                started = time.monotonic_ns()
                if self._pace_ns:
                    if not due:
                        due = started
                    if due > started:
                        await asyncio.sleep((due - started) / 1e9)
                        if self.stopping or self._retired(vu):
                            break
                    started = due  # a late start is timed from when it was due
                    due += self._pace_ns
                # ``vu.run_iteration()``'s three parts, here: its coroutine was one frame more
                # (256 bytes, tracemalloc) that every user held while waiting in a step.
                try:
                    ok = vu.begin_iteration()
                except DataExhausted as exc:  # ``exhausted: stop``: the planned end of the data
                    self.stop(str(exc))
                    break
                if ok is None:
                    try:
                        failed_in = await vu.run_steps(self.ctx.scenario.steps)
                    except asyncio.CancelledError:
                        vu.cut()
                        raise
                    ok = await vu.end_iteration(failed_in)
                # (rec.load is replaced each interval in workers: read it after the steps)
                self.ctx.recorder.load.iteration.record_ns(time.monotonic_ns() - started)
                failed_in_a_row = 0 if ok else failed_in_a_row + 1
                think = self.load.think_time_s
                backoff = failure_pause(
                    failed_in_a_row, self.load.failure_pause_first_s, self.load.failure_pause_max_s
                )
                if backoff > think and not self.stopping and not self._retired(vu):
                    self._pausing += 1
                    paused_at = time.monotonic_ns()
                    try:
                        await asyncio.sleep(backoff)
                    finally:
                        self._pausing -= 1
                        self.ctx.recorder.load.pauses += 1
                        self.ctx.recorder.load.pause_ns += time.monotonic_ns() - paused_at
                elif think > 0 and not self.stopping and not self._retired(vu):
                    await asyncio.sleep(think)
                elif not ok:
                    # A failure that never waited (an open refused at once by a loopback port,
                    # with ``failure_pause: 0``): let the loop turn, or this user would spin
                    # without end, the run's own end included.
                    await asyncio.sleep(0)
        finally:
            self._gauge_vus -= 1
            self.busy.discard(vu)
            await vu.close_all()

    # --- open model -----------------------------------------------------------------------------

    async def _open(self) -> None:
        """Make the planned starts from a chain of timer callbacks (``tick``) until the plan
        ends; cancelled by ``stop``.

        A timer callback runs in the loop's timer phase, before the callbacks already queued
        (every task woken by the last poll); a sleeping task would be resumed only after them,
        so each start would also wait for a whole queue of other users' steps. No future and no
        task step per start either. The wake-up is a ``clock.Alarm`` (a timerfd: nanosecond
        deadlines; its callback runs in the loop's poll phase, also before the queued tasks)
        where there is one, else a loop timer of the time left in whole milliseconds
        (``wait_s``); either way a start at most ``EARLY_NS`` away is made at once.
        """
        load = self.load
        rec = self.ctx.recorder
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        total_max = load.max_vus if load.max_vus is not None else default_max_vus(load)
        cap = max(1, shard_count(total_max, self.shard, self.shards))
        idle: list[VirtualUser] = []
        base = self.start_ns
        plan = iter(shard_starts(open_starts(load), self.shard, self.shards))
        timer: asyncio.TimerHandle | None = None
        alarm: Alarm | None = None
        # (rec.load and rec.timeseries are replaced each interval in workers: never cache them)

        def next_ns() -> int | None:
            t = next(plan, None)
            return None if t is None else base + int(t * 1e9)

        intended = next_ns()

        def tick() -> None:
            nonlocal timer, intended
            timer = None
            if done.done():
                return
            try:
                made = 0
                now = time.monotonic_ns()
                while intended is not None and not self.stopping:
                    if intended - now > EARLY_NS:
                        if alarm is not None:
                            alarm.arm(intended)
                        else:
                            timer = loop.call_later(wait_s(intended, now), tick)
                        return
                    if made >= BATCH:  # far behind: let in-flight iterations progress too
                        timer = loop.call_later(0, tick)
                        return
                    made += 1
                    vu = idle.pop() if idle else self._new_user(cap)
                    if vu is None:  # max_vus users are all busy: the start is dropped, counted
                        rec.load.dropped += 1
                        rec.series.dropped(rec.second(now))
                    else:
                        self._start_open(vu, intended, now, idle)
                    intended = next_ns()
                    now = time.monotonic_ns()
                done.set_result(None)
            except BaseException as exc:  # a bug here must end the run, not hang it
                done.set_exception(exc)

        alarm = Alarm.create(loop, tick)
        tick()
        try:
            await done
        finally:
            if timer is not None:
                timer.cancel()
            if alarm is not None:
                alarm.close()

    def _new_user(self, cap: int) -> VirtualUser | None:
        """A new user for an open-model start, or None when ``cap`` (max_vus) exist."""
        if self.max_vus_created >= cap:
            return None
        vu = self._user(self.max_vus_created)
        self.max_vus_created += 1
        return vu

    def _start_open(self, vu: VirtualUser, intended: int, now: int, idle: list[VirtualUser]) -> None:
        """Make one open-model start, due at ``intended``, now."""
        rec = self.ctx.recorder
        rec.load.started += 1
        rec.load.lag.record_ns(now - intended if now > intended else 0)
        busy = self.busy
        busy.add(vu)
        if len(busy) > self.max_active:
            self.max_active = len(busy)
        # An early start's iteration is timed from the start, a late one's from the intended
        # time (coordinated omission): the earlier of the two. (It was the later of the two,
        # which timed a late start from when it was made and hid its lateness:
        # tests/test_load_engine.py::test_overloaded_generator_*.)
        self._spawn(self._one(vu, intended if intended < now else now, idle))

    async def _one(self, vu: VirtualUser, intended_ns: int, idle: list[VirtualUser]) -> None:
        try:
            await vu.run_iteration()
            self.ctx.recorder.load.iteration.record_ns(time.monotonic_ns() - intended_ns)
        except DataExhausted as exc:  # ``exhausted: stop``: the planned end of the data
            self.stop(str(exc))
        except asyncio.CancelledError:
            await vu.close_all()
            raise
        finally:
            self.busy.discard(vu)
            idle.append(vu)
