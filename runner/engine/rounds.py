"""Callback rounds: a block of ``write`` and ``read`` steps run in the connections' own callbacks.

The per-message case of a load run is a block of writes and reads (``repeat`` of a request and
its answer). Run as a task, every answer wakes the user's task through the loop: the message's
future schedules the task, the task resumes its chain of coroutines, and each step is a new
coroutine. A ``Rounds`` runs the same steps with the same step code (``write.send_now``,
``read.settle``) and records them the same way (as ``run_steps`` does), but a read that must
wait registers the ``Rounds`` itself with the connection (``WsConnection.wait_with``); the
callback that queues the answer calls it, and it takes the message, records it, writes the next
request and waits again, all in that callback. The user's task sleeps on one future for the
whole block.

Measured on the independent harness's S1 (100 connections, a 64-byte JSON echo matched by
``seq``, Node ``ws`` server on the other core; bench/README.md): as a task (01696e5) 75,528 and
78,490 round trips/s; as callback rounds 85,203 and 90,816, in one run with picows' client at
90,699 and 87,823. Outside the harness, picows' own client over 100 connections takes 7.3 us of
CPU per round trip with callbacks and 8.6 with a task awaiting a future per message: the task's
wake-up is ~1.2 us of a round trip, and each step's coroutine ~0.13 us more.

What a callback cannot do is handed back to the task (``Handover``): a write that must wait
for its send buffer to drain. Everything else ends in the callbacks as it would in the task:
a message that does not match is skipped and the read waits on, the peer's close and the
time-out end the read with its rc (the close is taken in a callback of its own, after the
connection has finished closing, as the task would see it). A cancelled user (the end of the
run, a signal, an abandoned branch) takes its registration back and counts the step in
flight as ``run_steps`` does.

Used for a block whose steps are all writes and reads, run by a user with no background (an
``every`` or a ``parallel`` branch reading beside it would share the connection's one waiting
reader) and not by a branch itself; ``WSLOAD_CALLBACK_ROUNDS=0`` turns it off (the block then
runs in the task, step by step), e.g. to rule it out when chasing a problem.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from runner.client.codes import ReadResult
from runner.scenario.model import Step
from runner.steps import read, write
from runner.steps.base import StepOutcome, not_open

if TYPE_CHECKING:
    from runner.client.connection import WsConnection
    from runner.engine.vu import VirtualUser

__all__ = ["ENABLED", "WAITING", "Handover", "Rounds", "eligible"]

ENV = "WSLOAD_CALLBACK_ROUNDS"


def _enabled() -> bool:
    """False when ``WSLOAD_CALLBACK_ROUNDS`` is ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


ENABLED = _enabled()

_KINDS = (write.WriteStep, read.ReadStep)


def eligible(steps: Sequence[Step]) -> bool:
    """Whether a block is writes and reads only (the caller checks the user)."""
    return bool(steps) and all(type(step) in _KINDS for step in steps)


@dataclass(frozen=True, slots=True)
class Handover:
    """The task's turn: step ``position`` of the block's round ``round_`` (0-based) still has
    ``rest`` to await, whose outcome the task records; the rounds then go on after it."""

    round_: int
    position: int
    rest: Coroutine[Any, Any, StepOutcome]


#: ``Rounds.go``'s answer while the block waits in the callbacks (then await ``Rounds.future``).
WAITING: Any = object()


class Rounds:
    """One block's rounds, run from the connections' callbacks (see the module docstring).

    ``go()`` runs until a read must wait, the block ends, or a step needs the task; the block's
    end is ``None`` (every round passed), the round it failed in (1-based, as ``run_steps``
    returns it) or a ``Handover``. Also a ``Waker`` for the connection a read waits on."""

    __slots__ = (
        "_conn",
        "_conn_name",
        "_deadline_at",
        "_deadline_ns",
        "_future",
        "_loop",
        "_rows",
        "_skipped",
        "_sock",
        "_started",
        "_timeout_s",
        "_timeouts",
        "_timeouts_ns",
        "_waiting",
        "index",
        "position",
        "round_",
        "steps",
        "times",
        "vu",
    )

    def __init__(self, vu: VirtualUser, steps: Sequence[Step], times: int, index: str | None) -> None:
        self.vu = vu
        self.steps = steps
        self.times = times
        self.index = index
        self.round_ = 0
        self.position = 0
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[Any] | None = None
        self._waiting = False  # registered with a connection (``wait_with``)
        # the read in flight: its connection, start, deadlines, time-out and messages skipped
        self._sock = 0
        self._conn_name = ""  # the connection ``_sock`` and ``_conn`` are of ("": none yet)
        self._conn: WsConnection | None = None
        # Looked up once per block, not per message: each step's recorder row, each read's time-out.
        ctx = vu.ctx
        self._rows = [ctx.row(step) for step in steps]
        self._timeouts = [read.timeout_of(step, vu) if type(step) is read.ReadStep else 0.0 for step in steps]
        self._timeouts_ns = [int(timeout_s * 1e9) for timeout_s in self._timeouts]
        self._deadline_at = 0.0  # loop time
        self._started = 0
        self._deadline_ns = 0
        self._timeout_s = 0.0
        self._skipped = 0

    # --- the task's side --------------------------------------------------------------------

    def go(self) -> Any:
        """Run from the current position: ``WAITING``, or how the block ended (see the class)."""
        self._future = None
        return self._advance(False)

    def future(self) -> asyncio.Future[Any]:
        """Done with how the block ended, once ``go`` said ``WAITING``."""
        if self._future is None:
            self._future = self._loop.create_future()
        return self._future

    def stop(self) -> None:
        """The user is cancelled: take back the registration, so no callback runs a step more
        (and close a handed-over step the task will not await now)."""
        if self._waiting:
            self._waiting = False
            if self._conn is not None:
                self._conn.forget(self)
        future = self._future
        if future is not None and future.done() and not future.cancelled() and future.exception() is None:
            ended = future.result()
            if type(ended) is Handover:
                ended.rest.close()

    def next_position(self) -> bool:
        """After the task has run a handed-over step: move past it; False when the block is done."""
        self.position += 1
        if self.position == len(self.steps):
            self.position = 0
            self.round_ += 1
            return self.round_ < self.times
        return True

    # --- the connection's side (``Waker``) --------------------------------------------------

    def set_result(self, _: None, /) -> None:
        """The connection has a message, has closed, or the read's time is up."""
        if not self._waiting:
            return
        self._waiting = False
        future = self._future
        if future is not None and future.done():
            # The user's task was cancelled (the end of the run, a signal): its future is
            # cancelled at once, but the task takes the cancellation only in a later callback.
            # No step more runs here: the read stays in flight, counted as the task counts it.
            return
        try:
            ended = self._advance(True)
        except Exception as exc:  # a bug of ours: the task records it as the step's crash
            self._end_with(exc)
            return
        if ended is not WAITING:
            self._end_with(ended)

    def _end_with(self, ended: Any) -> None:
        future = self.future()
        if future.done():
            return
        if isinstance(ended, BaseException):
            future.set_exception(ended)
        else:
            future.set_result(ended)

    # --- the rounds --------------------------------------------------------------------------

    def _advance(self, resumed: bool) -> Any:
        # One frame for the steps of a round: the read's start and the per-message record are
        # written out here, not called (each call ~0.1 us of a ~11 us round trip; measured in
        # bench/README.md, "callback rounds").
        # ``now`` keeps the last clock reading of this call when it can stand for the next one:
        # nothing waits within one call, so the end of a write is also when its record falls
        # and, unless that record folded a second, when the next read starts (two
        # ``monotonic_ns`` calls less per round trip).
        vu = self.vu
        steps = self.steps
        count = len(steps)
        run = vu.ctx.recorder
        now = 0
        while True:
            step = steps[self.position]
            if resumed:  # the read in flight, woken
                resumed = False
                outcome = self._read_on(step, True)  # type: ignore[arg-type]
            else:
                if self.position == 0 and self.index is not None:
                    vu.variables[self.index] = self.round_
                vu.current_step = step
                if type(step) is write.WriteStep:
                    outcome = write.send_now(step, vu)
                    if type(outcome) is write.Sent:
                        return Handover(self.round_, self.position, write.drained(step, vu, outcome))
                    # passed: its latency runs from its start to the send's end, a reading of now
                    now = vu.step_started_ns + outcome if type(outcome) is int else 0
                else:  # a read begins: ``read.execute``'s start
                    name = step.connection  # type: ignore[attr-defined]
                    if name != self._conn_name and name in vu.sockets:  # (kept until the block ends)
                        self._conn_name = name
                        self._sock = vu.sockets[name]
                        self._conn = vu.client.connection(self._sock)
                    if name != self._conn_name:
                        outcome = not_open(step, name)
                    else:
                        self._timeout_s = timeout_s = self._timeouts[self.position]
                        self._started = started = vu.step_started_ns = now or monotonic_ns()
                        now = 0  # (the read's record reads the clock)
                        self._deadline_ns = started + self._timeouts_ns[self.position]
                        self._deadline_at = self._loop.time() + timeout_s
                        self._skipped = 0
                        # The commonest case first: nothing queued yet (the answer to the write
                        # just made), so register at once; ``wait_with(idle=True)`` declines when
                        # a message is queued or the connection closed, and ``_read_on`` reads
                        # it. Two calls less per round trip than ``_read_on``'s look first.
                        link = self._conn
                        if link is not None and link.wait_with(self, self._deadline_at, idle=True):
                            self._waiting = True
                            return WAITING
                        outcome = self._read_on(step, False)  # type: ignore[arg-type]
            if outcome is WAITING:
                return WAITING
            if type(outcome) is int:  # passed with the default success: as ``run_steps`` records it
                _, _, _, conn, quick = self._rows[self.position]
                if not now:
                    now = monotonic_ns()
                if now >= run.next_second_ns:  # a new second's first record: fold the last
                    run.fold(now)
                    kept = 0  # the fold took its time: the next step's start reads the clock
                else:
                    kept = now
                responses = quick.responses
                if responses is not None:  # a read: from the asking write's start
                    responses.append(now - vu.requests.pop(conn, vu.step_started_ns))
                quick.samples.append(outcome)
                now = kept
            else:
                now = 0  # (a whole record may fold a second too)
                if vu.account(step, outcome, steps):
                    return self.round_ + 1
            self.position += 1
            if self.position == count:
                self.position = 0
                self.round_ += 1
                if self.round_ >= self.times:
                    return None

    def _read_on(self, step: read.ReadStep, woken: bool) -> Any:
        """``read.execute``'s loop, one message at a time: the outcome, or ``WAITING``. The
        connection is asked directly for the message (no socket lookup per message); what is not
        a message (the peer's close, an unknown socket) comes from the client, as ``read`` says it."""
        conn = self._conn
        while True:
            if self._skipped and monotonic_ns() >= self._deadline_ns:
                result = ReadResult(-2)  # a busy stream: the time-out must still end the wait
            else:
                got = conn.receive_nowait() if conn is not None else None
                if got is None and (conn is None or conn.closed):
                    got = self.vu.client.read_now(self._sock)
                if got is None:
                    if woken:  # nothing queued, not closed: the timer, at the deadline
                        got = self.vu.client.read_timed_out(self._sock, self._timeout_s)
                    else:
                        assert conn is not None  # (None: ``read_now`` answered)
                        if not conn.wait_with(self, self._deadline_at):
                            raise RuntimeError(f"connection {step.connection!r} already has a reader waiting")
                        self._waiting = True
                        return WAITING
                result = got
            since = (conn.last_write_ns if conn is not None else 0) or self._started
            outcome = read.settle(step, self.vu, result, since, self._skipped, self._timeout_s)
            if outcome is not None:
                return outcome
            self._skipped += 1
            woken = False  # (what wakes it next is a message, the close or the timer again)
