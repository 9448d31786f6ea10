"""A virtual user: its variables, captures, open connections, and the loop over steps.

``RunContext`` is what all virtual users of one process share (the scenario, the recorder, the
resolved target); ``VirtualUser.run_iteration()`` runs the scenario's steps once and is what both
``wsload run`` (once, as a check) and the load engine (in a loop, per user) call.

After a failed step the rest of the iteration is skipped (each skipped step counts it) and the
user's connections are closed. At the end of every iteration connections left open are closed too,
so each iteration starts from nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from runner.client.timers import TimerHeap
from runner.engine import rounds
from runner.engine.data import DataExhausted, DataPicker
from runner.results.recorders import QuickRow, RunRecorder, StepRecorder
from runner.scenario.model import Scenario, Step
from runner.scenario.secrets import SecretRegistry
from runner.scenario.urls import resolve_url
from runner.steps import EXECUTE, kind_of
from runner.steps.base import StepOutcome

if TYPE_CHECKING:
    from runner.client import WebSocketClient
    from runner.client.options import ConnectOptions

__all__ = ["RunContext", "VirtualUser", "iter_steps", "resolve_url"]


def iter_steps(steps: Sequence[Step]) -> Iterator[Step]:
    """Every step in declaration order, blocks' inner steps included (blocks themselves not)."""
    for step in steps:
        inner = step.inner()
        if inner:
            yield from iter_steps(inner)
        else:
            yield step


@dataclass(slots=True)
class RunContext:
    """What every virtual user of a process shares. ``target`` is the resolved base URL;
    ``extra_ca`` a PEM to trust (the embedded TLS server's CA) when a spec names none."""

    scenario: Scenario
    recorder: RunRecorder
    target: str | None = None
    extra_ca: str | None = None
    source_addresses: tuple[str, ...] = ()
    #: What wss opens saw: any open that was not fully verified, and the errors ignored.
    tls_unverified: bool = False
    tls_ignored: set[str] = field(default_factory=set)
    tls_opens: int = 0  # wss opens that succeeded (a ws:// run has nothing to say about TLS)

    #: id(step) -> its recorder (steps live as long as the scenario; some are unhashable)
    recorders: dict[int, StepRecorder] = field(default_factory=dict)
    #: id(step) -> (recorder, is a read, moves a message, connection, its quick row): what
    #: recording a step needs, in one look-up per executed step.
    rows: dict[int, tuple[StepRecorder, bool, bool, str, QuickRow]] = field(default_factory=dict)
    #: (id(open step), source address) -> its URL and options, for connections without per-user
    #: templates (``runner.steps.open``).
    opens: dict[tuple[int, str | None], tuple[str, ConnectOptions]] = field(default_factory=dict)
    #: The run's secrets: the scenario's, and those its users make (``runner.scenario.secrets``); the
    #: recorder masks every text with them as it is recorded.
    secrets: SecretRegistry = field(init=False)
    #: The rows of the scenario's data sets each iteration picks (None: it has none); the load
    #: engine sets its ``shard`` and ``shards``.
    data: DataPicker | None = field(init=False)
    #: id() of the step lists holding a step that runs beside the rest (``every``): only those
    #: take ``VirtualUser``'s scoped path, the others keep the plain loop.
    scoped: frozenset[int] = field(init=False)
    #: id() of the step lists that may run as callback rounds (``rounds.eligible``): found once,
    #: not per iteration (the check was ~1% of an open and close in the S2 benchmark, cProfile).
    round_lists: frozenset[int] = field(init=False)
    #: The sleeping users' deadlines on one loop timer (``runner.client.timers``), made on the
    #: loop that runs them.
    _sleeper: TimerHeap | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.secrets = SecretRegistry(self.scenario.secrets)
        self.recorder.set_mask(self.secrets.mask)
        self.data = DataPicker(self.scenario.data, self.secrets) if self.scenario.data else None
        # Rows in declaration order, present even for steps that never ran.
        for step in iter_steps(self.scenario.steps):
            self.step_recorder(step)
        lists = tuple(_step_lists(self.scenario.steps))
        self.scoped = frozenset(id(block) for block in lists if any(kind_of(s).alongside for s in block))
        self.round_lists = frozenset(id(block) for block in lists if rounds.eligible(block))

    @property
    def seed(self) -> int:
        """The seed of the users' drawn think times (the run façade always sets one)."""
        return self.scenario.seed or 0

    def sleeper(self) -> TimerHeap:
        """The users' shared timer for ``sleep`` steps, on the running loop."""
        loop = asyncio.get_running_loop()
        sleeper = self._sleeper
        if sleeper is None or sleeper.loop is not loop:
            sleeper = self._sleeper = TimerHeap(loop)
        return sleeper

    def step_recorder(self, step: Step) -> StepRecorder:
        rec = self.recorders.get(id(step))
        if rec is None:
            rec = self.recorders[id(step)] = self.recorder.step(
                step.name, step.kind, getattr(step, "connection", ""), step.location.line
            )
            kind = kind_of(step)
            conn = getattr(step, "connection", "")
            quick = self.recorder.quick_row(rec, kind.answer, kind.message)
            self.rows[id(step)] = (rec, kind.answer, kind.message, conn, quick)
        return rec

    def row(self, step: Step) -> tuple[StepRecorder, bool, bool, str, QuickRow]:
        row = self.rows.get(id(step))
        if row is None:
            self.step_recorder(step)
            row = self.rows[id(step)]
        return row

    def adjust_options(self, options: ConnectOptions) -> ConnectOptions:
        """Trust the embedded server's CA, unless the connection names its own CA or says which
        certificate errors to ignore (then those errors must really be met and ignored)."""
        if self.extra_ca and options.ca_certificates is None and options.ignore_ssl_errors is None:
            return replace(options, ca_certificates=self.extra_ca)
        return options

    def note_tls(self, verified: bool, ignored: tuple[str, ...], all_ignored: bool) -> None:
        """Remember how a wss open treated the certificate, for the report's ``tls``."""
        self.tls_opens += 1
        if not verified:
            self.tls_unverified = True
        self.tls_ignored.update(ignored)  # with all ignored: the errors read off the certificate


def _step_lists(steps: tuple[Step, ...]) -> Iterator[tuple[Step, ...]]:
    """``steps`` and every block's list within, at any depth."""
    yield steps
    for step in steps:
        for block in step.blocks():
            yield from _step_lists(block)


@dataclass(slots=True)
class _Background:
    """One background (``every``) of a user: its task, the future that tells it to start no
    more rounds, its branch (whose step in flight a cut reports) and the connections it uses."""

    task: asyncio.Task[int | None]
    stop: asyncio.Future[None]
    branch: _Branch
    uses: frozenset[str]


class VirtualUser:
    """One simulated user: ``vu`` number, current ``iteration``, variables, connections by name."""

    #: A user is never abandoned, and its draws are the first sequence; its branches have their
    #: own (``_Branch``: slots of the same names).
    abandoned = False
    lineage = 0

    # Slots: thousands of users each hold one; no per-instance ``__dict__``.
    __slots__ = (
        "background",
        "branches",
        "client",
        "ctx",
        "current_step",
        "draws",
        "id",
        "iteration",
        "requests",
        "sockets",
        "source_address",
        "step_started_ns",
        "variables",
    )

    def __init__(
        self,
        ctx: RunContext,
        client: WebSocketClient,
        vu_id: int = 1,
        *,
        variables: Mapping[str, object] | None = None,
        source_address: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.id = vu_id
        self.draws = 0  # random draws made (``runner.scenario.draws``): the next one's number
        self.iteration = 0
        self.source_address = source_address
        self.variables: dict[str, Any] = dict(ctx.scenario.variables)
        if variables:
            self.variables.update(variables)
        self.variables["vu"] = vu_id
        self.variables["iteration"] = 0
        self.sockets: dict[str, int] = {}
        #: connection -> when the last write step on it began: where a read's response time
        #: starts (``runner.steps.write`` sets it, the read that answers takes it).
        self.requests: dict[str, int] = {}
        self.current_step: Step | None = None  # the step in flight, for interrupt reports
        #: When the step in flight began (each step module sets it from the clock reading it takes
        #: anyway, not one more per step): how long it had waited if the run cuts it.
        self.step_started_ns = 0
        #: The backgrounds running (``every``), oldest first; None until the first (a list per
        #: user would cost 56 bytes each for the scenarios that have none).
        self.background: list[_Background] | None = None
        self.branches = 0  # backgrounds started so far: each draws from a sequence of its own

    # --- the loop -------------------------------------------------------------------------

    async def run_iteration(self) -> bool:
        """Run the scenario's steps once; True when every step passed. Connections are closed
        at the end (at once after a failure). The closed model's user loop does the same three
        parts itself (``runner.load.engine``): this coroutine is one frame less that every user
        would hold while it waits in a step."""
        ok = self.begin_iteration()
        if ok is None:
            try:
                failed_in = await self.run_steps(self.ctx.scenario.steps)
            except asyncio.CancelledError:
                self.cut()
                raise
            ok = await self.end_iteration(failed_in)
        return ok

    def begin_iteration(self) -> bool | None:
        """Start an iteration: None when its steps are to run (``run_steps`` on the scenario's
        steps, then ``end_iteration``, or ``cut`` if cancelled); the iteration's result when it
        already ended (no data row, ``exhausted: fail``). ``DataExhausted``: no iteration began."""
        ctx = self.ctx
        rec = ctx.recorder
        rows = self._rows() if ctx.data is not None else None  # DataExhausted: no iteration begins
        rec.iterations_started += 1
        rec.series.start(rec.second(monotonic_ns()))
        self.variables["iteration"] = self.iteration
        if rows is not None:
            if isinstance(rows, DataExhausted):
                return self._no_row(rows)
            self.variables.update(rows)
        if self.requests:
            self.requests.clear()
        return None

    async def end_iteration(self, failed_in: int | None) -> bool:
        """End an iteration whose steps ran (``failed_in``: what ``run_steps`` returned): count
        it, close the connections it left open; True when every step passed."""
        self.current_step = None
        self.iteration += 1
        rec = self.ctx.recorder
        ok = failed_in is None
        if ok:
            rec.iterations_completed += 1
        else:
            rec.iterations_failed += 1
        await self.close_all()
        rec.series.ended(rec.second(monotonic_ns()))
        return ok

    async def run_steps(
        self, steps: Sequence[Step], times: int = 1, index: str | None = None, *, scoped: bool = True
    ) -> int | None:
        """Run ``steps`` in order, ``times`` rounds (a ``repeat`` block: ``index``, if named, holds
        the round number), recording each; at the first failure count the rest of that round as
        skipped and return the round it failed in (1-based); None when every step passed.

        One coroutine runs all rounds of a block: a coroutine per round cost ~0.35 us per round
        trip in the round-trip benchmark. A list that starts a background takes ``_run_scoped``;
        a block of only writes and reads, run by a user with no background, runs as callback
        rounds (``_run_rounds``, ``runner.engine.rounds``)."""
        if scoped and self.ctx.scoped and id(steps) in self.ctx.scoped:
            return await self._run_scoped(steps, times, index)
        if (
            rounds.ENABLED
            and id(steps) in self.ctx.round_lists
            and not self.background
            and type(self) is VirtualUser
        ):
            return await self._run_rounds(steps, times, index)
        rows, run = self.ctx.rows, self.ctx.recorder
        # Few locals, and counters, not range(), enumerate() or the steps' iterator: a user
        # waiting in a step holds this frame, 8 bytes a local and 48 an iterator (tracemalloc);
        # where a step sits is looked up only when the rest of its round must be counted.
        round_ = 0
        count = len(steps)
        while round_ < times:
            if index is not None:
                self.variables[index] = round_
            round_ += 1
            at = 0
            while at < count:
                step = steps[at]
                at += 1
                self.current_step = step  # (each step module sets ``step_started_ns`` when it begins)
                # No context manager or helper per step: a generator context manager per step
                # cost ~1 us, and every coroutine frame a waiting user holds costs memory.
                try:
                    outcome = await EXECUTE[type(step)](step, self)
                except Exception as exc:  # a bug of ours, not the server's: counted, fails the run
                    self._record_crash(step, exc)
                    self._skip(_after(steps, step))
                    return round_
                except asyncio.CancelledError:  # (a try costs nothing until it catches: 3.11)
                    self._cancelled_in(step, _after(steps, step))
                    raise
                if outcome is None:  # a wait that passed: its latency the time since it began
                    outcome = monotonic_ns() - self.step_started_ns
                if isinstance(outcome, int):
                    # Passed with the default success, the per-message case: a bare sample in the
                    # step's quick row until the fold (``RunRecorder``), written out here rather
                    # than called (~0.3 us a round trip of two steps; ``Rounds._advance`` has
                    # the same lines).
                    _, _, _, conn, quick = rows.get(id(step)) or self.ctx.row(step)
                    now = monotonic_ns()
                    if now >= run.next_second_ns:  # a new second's first record: fold the last
                        run.fold(now)
                    responses = quick.responses
                    if responses is not None:  # a read: from the asking write's start
                        responses.append(now - self.requests.pop(conn, self.step_started_ns))
                    quick.samples.append(outcome)
                    continue
                if self.account(step, outcome, steps):
                    return round_
                # The frame would keep the outcome (and an open's timing) while the next step
                # waits: ~250 bytes per user holding a connection (3,000 users).
                del outcome
        return None

    def account(self, step: Step, outcome: StepOutcome, steps: Sequence[Step]) -> bool:
        """Record an execution of ``step`` (one of a round's ``steps``) that returned a
        ``StepOutcome``; True when it failed, the rest of the round then counted as skipped.
        (The per-message case, an ``int``, is written out where steps run: ``run_steps`` and
        ``Rounds._advance``.)"""
        if outcome.record:
            self._record(step, outcome)
        if outcome.failure is not None:
            self._skip(_after(steps, step))
            return True
        return False

    async def _run_rounds(self, steps: Sequence[Step], times: int, index: str | None) -> int | None:
        """``run_steps`` for a block of writes and reads: run in the connections' callbacks
        (``runner.engine.rounds``, where the measured reason is); a step handed back is awaited
        here, and the rounds go on after it."""
        block = rounds.Rounds(self, steps, times, index)
        while True:
            try:
                ended = block.go()
                if ended is rounds.WAITING:
                    ended = await block.future()
                if type(ended) is not rounds.Handover:
                    return ended  # type: ignore[no-any-return]  # None or the failed round
                step = steps[ended.position]
                outcome = await ended.rest
            except Exception as exc:  # a bug of ours, not the server's: counted, fails the run
                step = self.current_step or steps[block.position]
                self._record_crash(step, exc)
                self._skip(_after(steps, step))
                return block.round_ + 1
            except asyncio.CancelledError:
                block.stop()
                step = self.current_step or steps[block.position]
                self._cancelled_in(step, _after(steps, step))
                raise
            if self.account(step, outcome, steps):
                return block.round_ + 1
            if not block.next_position():
                return None

    # --- backgrounds (``every``) ------------------------------------------------------------

    async def _run_scoped(self, steps: Sequence[Step], times: int, index: str | None) -> int | None:
        """``run_steps`` for a list that starts backgrounds: each round ends the backgrounds it
        started (at the end of their round when it passed, abandoned when it failed); a failed
        background fails the round."""
        for round_ in range(times):
            if index is not None:
                self.variables[index] = round_
            mark = len(self.background or ())
            try:
                failed = await self.run_steps(steps, scoped=False)
                self.current_step = None  # waiting for the backgrounds now, not for a step of ours
                if await self._end_background(mark, graceful=failed is None) and failed is None:
                    failed = 1
            except asyncio.CancelledError:
                await self._cancel_background(mark)
                raise
            if failed is not None:
                return round_ + 1
        return None

    def _cancelled_in(self, step: Step, rest: Sequence[Step]) -> None:
        """This user (or branch) was cancelled during ``step``, ``rest`` still to come in its
        round. Abandoned (a failure elsewhere): the step and the rest count as skipped, as after
        a failure. Cut (the end of the run, a signal): the step counts as pending, with how long
        it had waited. A block's own steps were counted by its inner level; the rest here."""
        leaf = not step.inner()
        if self.abandoned:
            if leaf:
                self.ctx.step_recorder(step).skipped += 1
            self._skip(rest)
        elif leaf:
            self.ctx.step_recorder(step).record_pending(monotonic_ns() - self.step_started_ns)

    def start_background(
        self,
        rounds: Callable[[VirtualUser, asyncio.Future[None]], Coroutine[Any, Any, int | None]],
        uses: frozenset[str],
    ) -> None:
        """See ``runner.steps.base.User.start_background``."""
        branch = self._branch()
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.get_running_loop().create_task(rounds(branch, stop))
        if self.background is None:
            self.background = []
        self.background.append(_Background(task, stop, branch, uses))

    def _branch(self) -> _Branch:
        self.branches += 1
        return _Branch(self, self.branches)

    def _top(self) -> VirtualUser:
        """The user itself (a branch: the user it belongs to)."""
        return self

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        """See ``runner.steps.base.User.sleep``."""
        return self.ctx.sleeper().sleep(seconds)

    def backgrounds_use(self, connection: str) -> bool:
        """See ``runner.steps.base.User.backgrounds_use`` (a user without any: one look)."""
        top = self._top()
        return top.background is not None and _uses(top, connection)

    async def release(self, connection: str) -> None:
        """See ``runner.steps.base.User.release``: every background of the user that uses
        ``connection``, wherever it was started (in a branch too), ends its round first."""
        await _release_in(self._top(), connection)

    async def run_branches(self, branches: tuple[tuple[Step, ...], ...]) -> int | None:
        """See ``runner.steps.base.User.run_branches``. The branches are listed beside the
        backgrounds while they run. The first that fails abandons the others; a cancellation of
        this user (abandoned or cut) cancels them the same way, so nothing outlives its step."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)  # (a branch runs its steps once: nothing to stop between rounds)
        runs: list[_Background] = []
        for steps in branches:
            branch = self._branch()
            runs.append(_Background(loop.create_task(branch.run_steps(steps)), done, branch, frozenset()))
        if self.background is None:
            self.background = []
        mark = len(self.background)
        self.background += runs
        failed: int | None = None
        try:
            pending = {run.task for run in runs}
            while pending and failed is None:
                ended, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                failed = next(
                    (j for j, run in enumerate(runs, 1) if run.task in ended and self._failed(run)), None
                )
            if failed is not None:
                await self._stop(runs, abandoned=True)
        except asyncio.CancelledError:
            await self._cancel_background(mark)
            raise
        del self.background[mark:]
        return failed

    async def _end_background(self, mark: int, *, graceful: bool) -> bool:
        """End the backgrounds started since ``mark`` (at the end of their round, or abandoned
        when the main flow failed); True when one of them failed. They stay listed until ended,
        so a cancellation meanwhile still reaches them."""
        background = self.background
        if not background or len(background) <= mark:
            return False
        ending = background[mark:]
        if graceful:
            for bg in ending:
                await _finish(bg)
        else:
            await self._stop(ending, abandoned=True)
        del background[mark:]
        return any([self._failed(bg) for bg in ending])

    async def _cancel_background(self, mark: int) -> None:
        """This user is being cancelled: so are the backgrounds and branches it started since
        ``mark``, abandoned if it is, else cut."""
        background = self.background or []
        await self._stop(background[mark:], abandoned=self.abandoned)
        del background[mark:]

    @staticmethod
    async def _stop(backgrounds: Sequence[_Background], *, abandoned: bool) -> None:
        """Cancel ``backgrounds`` at once and wait for them. ``abandoned`` (a failure elsewhere):
        their steps in flight and left in their rounds count as skipped; else (a cut) their steps
        in flight as pending (``_cancelled_in``, where each cancellation lands), and so do those
        of the backgrounds and branches they started."""
        tasks = []
        for bg in backgrounds:
            if not bg.task.done():
                bg.branch.abandoned = abandoned
                bg.task.cancel()
                tasks.append(bg.task)
        if tasks:
            await asyncio.wait(tasks)  # (never raises their CancelledError into ours)

    def _failed(self, bg: _Background) -> bool:
        """Whether an ended background failed: a failed round, or a bug of ours outside any step
        (counted as an internal error of the step it was at, which fails the run)."""
        task = bg.task
        if not task.done() or task.cancelled():
            return False
        exc = task.exception()
        if exc is None:
            return task.result() is not None
        step = bg.branch.current_step
        if step is not None and isinstance(exc, Exception):
            bg.branch._record_crash(step, exc)
        return True

    def _record(self, step: Step, outcome: StepOutcome) -> None:
        """Record one execution that returned a ``StepOutcome`` (the per-message case, an ``int``,
        is recorded where steps run: ``run_steps``, ``Rounds._advance``). A passed one with its
        kind's success and nothing more to say takes the first branch, without the general one's
        keyword calls."""
        ctx = self.ctx
        rec, is_read, is_message, conn, _ = ctx.rows.get(id(step)) or ctx.row(step)
        run = ctx.recorder
        now = monotonic_ns()
        if now >= run.next_second_ns:  # the first record of a new second: fold the last one's
            run.fold(now)
        latency, skipped, rc = outcome.latency_ns, outcome.skipped_messages, outcome.rc
        passed = outcome.failure is None and outcome.rc_ok and outcome.timing is None
        if outcome.delivery_ns is not None:
            rec.record_delivery(outcome.delivery_ns, outcome.message_id)
        if is_read and rc == 0 and rec.response is not None:
            # The response time: from the asking write step's start (see ``requests``).
            rec.response.record_ns(now - self.requests.pop(conn, self.step_started_ns))
        second = (now - run.start_ns) // 1_000_000_000
        if passed:
            rec.record_ok(latency, skipped)
            run.series.step_ok(second, latency if is_read else None, is_message)
            return
        failure, rc_ok = outcome.failure, outcome.rc_ok
        # The time to an unexpected error (a connect time-out) is not a latency sample.
        if not (rc_ok or failure is None):
            latency = None
        rec.record(
            ok=failure is None,
            rc=rc,
            rc_is_success=rc_ok,
            latency_ns=latency,
            error=failure.message if failure is not None else None,
            skipped_messages=skipped,
        )
        if outcome.timing is not None:
            t = outcome.timing
            rec.record_connect(t.tcp_ns, t.tls_ns, t.upgrade_ns)
        if outcome.closed is not None:
            rec.record_close(*outcome.closed)

        run.series.step(
            second, failure is None, None if rc_ok else rc, latency if is_read else None, rc_ok and is_message
        )
        if failure is not None:
            run.add_failure(step.name, step.location.line, failure.message, failure.expected, failure.actual)

    def received(
        self, step: Step, arrived_ns: int, delivery_ns: int | None, message_id: str | None = None
    ) -> None:
        """One message a ``receive`` took (``runner.steps.base.User.received``), recorded as it
        came: the step's ``received`` count, its delivery latency, the messages of the second it
        arrived in, and the longest wait for a message (from the step's start or the message
        before). ``step_started_ns`` moves to the arrival, so a receive cut by the end of the run
        reports how long it had gone without a message (``runner.results.verdict``)."""
        ctx = self.ctx
        rec = ctx.recorders.get(id(step)) or ctx.step_recorder(step)
        rec.received += 1
        since = self.step_started_ns
        if arrived_ns > since:
            if arrived_ns - since > rec.received_gap_max_ns:
                rec.received_gap_max_ns = arrived_ns - since
            self.step_started_ns = arrived_ns
        if delivery_ns is not None:
            rec.record_delivery(delivery_ns, message_id)
        run = ctx.recorder
        run.series.message((arrived_ns - run.start_ns) // 1_000_000_000 if arrived_ns > run.start_ns else 0)

    def _record_crash(self, step: Step, exc: Exception) -> None:
        """An exception inside a step: the step fails with rc -1 and an ``internal error`` text,
        counted in ``internal_errors``, which fails the run whatever the step expected."""
        ctx = self.ctx
        rec = ctx.step_recorder(step)
        message = f"internal error (a bug in wsload): {type(exc).__name__}: {exc}"
        rec.record(ok=False, rc=-1, rc_is_success=False, latency_ns=None, error=message)
        rec.internal_errors += 1
        run = ctx.recorder
        run.series.step(run.second(monotonic_ns()), False, -1, None)
        run.add_failure(step.name, step.location.line, message, "", "")

    def cut(self) -> None:
        """The iteration is being cut (end of the run, a signal): counted as interrupted. Its
        step in flight was counted as pending where the cancellation met it (``run_steps``), and
        so were its backgrounds' and branches' (their own levels cancel them); any left are
        cancelled here."""
        self.iteration += 1
        self.ctx.recorder.iterations_interrupted += 1
        for bg in self.background or ():
            bg.task.cancel()
        self.background = None

    def _rows(self) -> dict[str, dict[str, object]] | DataExhausted:
        """This iteration's data rows; a set out of unique rows ends the user (``stop``: the
        exception goes up to the engine) or fails the iteration (``fail``: returned)."""
        assert self.ctx.data is not None
        try:
            rows, used = self.ctx.data.rows(self.ctx.seed, self.id, self.draws)
        except DataExhausted as exc:
            if exc.dataset.exhausted == "stop":
                raise
            return exc
        self.draws += used
        return rows

    def _no_row(self, exc: DataExhausted) -> bool:
        """An iteration with no row (``exhausted: fail``): its first step fails with the reason,
        the others are skipped, and the iteration counts as failed."""
        steps = self.ctx.scenario.steps
        first = steps[0]
        rec = self.ctx.step_recorder(first)
        rec.record(ok=False, rc=-1, rc_is_success=False, latency_ns=None, error=str(exc))
        run = self.ctx.recorder
        run.series.step(run.second(monotonic_ns()), False, -1, None)
        run.add_failure(first.name, first.location.line, str(exc), "a row", "none left")
        self._skip(steps[1:])
        self.iteration += 1
        run.iterations_failed += 1
        run.series.ended(run.second(monotonic_ns()))
        return False

    def _skip(self, steps: Sequence[Step]) -> None:
        for step in iter_steps(steps):
            self.ctx.step_recorder(step).skipped += 1

    # --- connections ------------------------------------------------------------------------

    async def close_all(self) -> None:
        """Close every connection this user holds (quietly: the outcome is not a step's)."""
        sockets = list(self.sockets.values())
        self.sockets.clear()
        for sock in sockets:
            with contextlib.suppress(Exception):  # closing must never mask the run's result
                await self.client.close(sock, 1.0)


async def _finish(bg: _Background) -> None:
    """Tell a background to start no more rounds and wait for its round in flight to end."""
    if not bg.stop.done():
        bg.stop.set_result(None)
    if not bg.task.done():
        await asyncio.wait((bg.task,))


class _Branch(VirtualUser):
    """A background's or a branch's view of its user: the same connections, variables, client
    and number, with its own step in flight, its own asking writes (``requests``: a read's
    response time starts at a write of its own flow, not at a background's) and its own
    sequence of random draws. The sequence is placed by the branch's lineage (its parent's and
    its number there), so it is apart from the user's and every other branch's, and the same
    whatever the interleaving: ``--seed`` replays it."""

    __slots__ = ("abandoned", "lineage", "root")

    def __init__(self, parent: VirtualUser, number: int) -> None:  # (shares, so no super().__init__)
        self.root = parent._top()
        self.ctx = parent.ctx
        self.client = parent.client
        self.id = parent.id
        self.iteration = parent.iteration
        self.source_address = parent.source_address
        self.variables = parent.variables
        self.sockets = parent.sockets
        self.requests = {}
        self.current_step = None
        self.step_started_ns = 0
        self.background = None
        self.branches = 0
        self.abandoned = False
        self.lineage = hash((parent.lineage, number)) & _DRAW_BLOCKS
        self.draws = self.lineage << 40  # (2**40 draws apart: one branch never reaches the next)

    def _top(self) -> VirtualUser:
        return self.root


#: A branch's place among the 2**23 sequences of draws of a user (``_Branch.lineage``).
_DRAW_BLOCKS = (1 << 23) - 1


def _uses(user: VirtualUser, connection: str) -> bool:
    return any(connection in bg.uses or _uses(bg.branch, connection) for bg in user.background or ())


async def _release_in(user: VirtualUser, connection: str) -> None:
    """End, at the end of their round, the backgrounds under ``user`` that use ``connection``."""
    for bg in list(user.background or ()):
        if connection in bg.uses:
            await _finish(bg)
        else:
            await _release_in(bg.branch, connection)


def _after(steps: Sequence[Step], step: Step) -> Sequence[Step]:
    """The steps after ``step`` (this very object) in ``steps``."""
    for position, each in enumerate(steps):
        if each is step:
            return steps[position + 1 :]
    return ()
