"""``TimerHeap``: many deadlines of one event loop on one loop timer.

A loop timer per deadline is dear where there are thousands of them. uvloop's ``TimerHandle``,
its libuv timer and arguments are about 530 bytes, and a cancelled one is not freed at once: the
handle and its libuv timer refer to each other, so it waits for a full garbage collection, which
a load run keeps rare (``runtime.quiet_gc``). Every open's time-out made one (measured: 3,000 of
them, cancelled, still alive while 3,000 connections were held), and every sleeping user one
more. Here a deadline is an entry in a heap (about 120 bytes, freed when it falls due or is
cancelled and reached), and one loop timer is armed for the earliest.

Callbacks run as punctually as the loop's own timers: the one timer is the loop's, armed for
the earliest deadline, and every entry due (within the loop's 1 ms resolution) runs in its
callback, in deadline order. A cancelled entry stays in the heap without its callback until its
time, or until cancelled entries are most of the heap, which is then rebuilt without them. A
sleep cut before its time (its future cancelled) goes when the heap next doubles in size.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

__all__ = ["TimerEntry", "TimerHeap", "settle"]

#: uvloop's timers have a resolution of 1 ms: a deadline within it counts as reached (as
#: asyncio's own loop does with its clock resolution), so the timer never fires just short of
#: a deadline and is re-armed for the same moment.
_RESOLUTION_S = 0.001

#: A heap is rebuilt without its cancelled entries only past this many (and when they are most of
#: it), so a few deadlines set and cancelled in turn never rebuild it each time.
_COMPACT_MIN = 64


class TimerEntry:
    """One entry of a ``TimerHeap``: ``cancel`` drops its callback (and what it refers to). The
    callback may be a future, then settled (``settle``) when the entry is due: a wait needs no
    ``partial`` of its own (~110 bytes per user holding a connection through a sleep)."""

    __slots__ = ("callback", "heap")

    def __init__(self, callback: Callable[[], object] | asyncio.Future[None], heap: TimerHeap) -> None:
        self.callback: Callable[[], object] | asyncio.Future[None] | None = callback
        self.heap = heap

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self.heap.cancelled()


def settle(future: asyncio.Future[None], *_: object) -> None:
    """Set ``future`` done unless it is already (a timer's, a writer's or a done-callback's: the
    latter passes the future it was added to)."""
    if not future.done():
        future.set_result(None)


class TimerHeap:
    """The deadlines of one event loop and the one loop timer that serves them."""

    __slots__ = ("_armed_at", "_cancelled", "_handle", "_heap", "_order", "_scan_at", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: (deadline, order, entry); a ``sleep``'s entry is its future itself (see ``sleep``).
        self._heap: list[tuple[float, int, TimerEntry | asyncio.Future[None]]] = []
        self._order = itertools.count()  # equal deadlines run in the order they were set
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._cancelled = 0  # cancelled entries still in the heap
        #: A sleep cancelled with its user says nothing to the heap (an entry's ``cancel`` does,
        #: ``cancelled``): at this many entries the heap is rebuilt without the dead ones and the
        #: mark set to twice what is left, so a long sleep cut every iteration (a ``parallel``
        #: branch's) cannot grow it without bound; a rebuild per doubling, O(1) per entry.
        self._scan_at = _COMPACT_MIN

    def call_at(self, when: float, callback: Callable[[], object] | asyncio.Future[None]) -> TimerEntry:
        """Run ``callback`` (settle it, for a future) at loop time ``when`` unless the returned
        entry is cancelled first."""
        entry = TimerEntry(callback, self)
        self._push(when, entry)
        return entry

    def sleep(self, delay_s: float) -> asyncio.Future[None]:
        """A future done ``delay_s`` seconds from now (cancelling it only ends this wait). The
        heap holds the future itself, not a ``TimerEntry``: a sleep is never cancelled through
        the heap (a cancelled future stays until its time, then is passed over), and the entry
        was ~56 bytes more per sleeping user (tracemalloc, 3,000 users holding a connection)."""
        future: asyncio.Future[None] = self.loop.create_future()
        self._push(self.loop.time() + max(delay_s, 0.0), future)
        return future

    def _push(self, when: float, entry: TimerEntry | asyncio.Future[None]) -> None:
        """Add ``entry`` for ``when``: first rebuild the heap without its dead entries if it has
        reached ``_scan_at`` (see ``__init__``), and arm the loop timer if it is the earliest."""
        heap = self._heap
        heapq.heappush(heap, (when, next(self._order), entry))
        if len(heap) >= self._scan_at:
            self._compact()
            self._scan_at = max(2 * len(heap), _COMPACT_MIN)
        if self._handle is None or when < self._armed_at:
            self._arm(when)

    def cancelled(self) -> None:
        """An entry was cancelled (``TimerEntry.cancel``). When most of the heap is cancelled
        entries, rebuild it without them: each is ~160 bytes until its time, and every open leaves
        one for the length of its time-out (5,000 held users carried 0.8 MiB of them, measured)."""
        self._cancelled += 1
        if self._cancelled > _COMPACT_MIN and 2 * self._cancelled > len(self._heap):
            self._compact()

    def _compact(self) -> None:
        """Rebuild the heap without its cancelled entries and its sleeps already done."""
        heap = self._heap
        heap[:] = [item for item in heap if _live(item[2])]
        heapq.heapify(heap)
        self._cancelled = 0

    @property
    def pending(self) -> int:
        """Entries in the heap (those cancelled and not yet due included)."""
        return len(self._heap)

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self.loop.call_at(when, self._run)
        self._armed_at = when

    def _run(self) -> None:
        self._handle = None
        heap = self._heap
        due = self.loop.time() + _RESOLUTION_S
        while heap and heap[0][0] <= due:
            entry = heapq.heappop(heap)[2]
            if not isinstance(entry, TimerEntry):  # a ``sleep``'s future
                settle(entry)
                continue
            callback = entry.callback
            if callback is None:
                self._cancelled -= 1
            else:
                entry.callback = None
                try:
                    if isinstance(callback, asyncio.Future):
                        settle(callback)
                    else:
                        callback()
                except Exception as exc:  # one failing callback must not stop the others
                    self.loop.call_exception_handler(
                        {"message": "exception in a TimerHeap callback", "exception": exc}
                    )
        if heap:
            self._arm(heap[0][0])


def _live(entry: TimerEntry | asyncio.Future[None]) -> bool:
    """An entry still to run when due: not cancelled (a sleep's future: not already done)."""
    if isinstance(entry, TimerEntry):
        return entry.callback is not None
    return not entry.done()
