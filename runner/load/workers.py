"""A load run over worker processes: each runs its shard; the parent merges their measurements.

Protocol over one ``multiprocessing`` Pipe per worker (spawn context: a fresh interpreter, no
inherited event loop or sockets), in the typed records of ``runner.load.messages``:

    worker -> parent   Ready()                         scenario loaded, waiting for the start
                       Tick(delta, gauges)             every second: ``RunRecorder.take_interval()``
                                                       and the ``Gauges`` (vus, connections, paused)
                                                       now, and at once when a stop arrives
                       Done(delta, info)               the last delta; ``WorkerInfo``: max_active,
                                                       stop_reason, tls
                       Failed(text)                    could not load or run (the run fails)
    parent -> worker   Start(start_ns)                 a shared start on the monotonic clock
                       Stop(reason)                    SIGINT/SIGTERM or a lost abort_on_fail

What each message does to the run is ``runner.load.pool_state.PoolState.apply``, pure code; the
``WorkerPool`` here spawns the processes, moves the messages and keeps time.

``start_ns`` is on ``CLOCK_MONOTONIC``, which every process of one machine shares (and which NTP
does not step, unlike the wall clock), so all shards follow one plan from one instant.

Deltas, not cumulative snapshots: the parent adds each delta to its total (exact: counts add,
HDR histograms add), so the cost per second does not grow with the run's length, and a worker
killed mid-run loses at most its last second (the parent reads what is still in the pipe
before it names the worker incomplete); the run then says which worker is incomplete. A worker
stays responsive while it starts thousands of users at once (``engine.START_BATCH``), so it sends
its deltas and sees the stop within the parent's patience (``graceful_stop_s + END_MARGIN_S``).

The embedded target (``target: embedded``) is started once per worker, inside the worker: the
server's work then spreads over the cores with the users' (one server in the parent was the
bottleneck at 5,000 users), and no process holds more than its own share of descriptors
(its users' sockets and their server side, which the limits check counts twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

from runner.engine.check import tls_info
from runner.engine.embedded import is_embedded, resolved_target
from runner.engine.vu import RunContext
from runner.errors import RunError, WsloadError
from runner.load.driver import Gauges, ShardDriver
from runner.load.limits import LimitPlan, raise_nofile
from runner.load.messages import (
    Done,
    Failed,
    ParentMessage,
    Ready,
    Stop,
    Tick,
    WorkerInfo,
    WorkerMessage,
)
from runner.load.monitor import LiveView, Monitor, Progress
from runner.load.pool_state import PoolState
from runner.load.populations import contexts, plan_result, plan_tls
from runner.load.result import load_result
from runner.load.settings import LoadOverrides, apply_overrides
from runner.loader import load_scenario
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult
from runner.runtime import children_start_deaf, ignore_sigint, on_stop_signals, utc_now_iso
from runner.scenario.model import LoadSpec, Scenario
from runner.scenario.plan import plan_duration

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

__all__ = ["WorkerJob", "WorkerPool", "run_workers", "worker_main"]

#: Seconds a worker may take to start (spawn, imports, loading the scenario).
READY_TIMEOUT_S = 60.0
#: After the plan and the grace period, how long the parent waits before killing a worker.
END_MARGIN_S = 15.0
#: The shared start is this far after the parent sends it, so every worker has it in time.
START_AHEAD_NS = 100_000_000
#: The parent's tick is this far into each second, so the workers' deltas of it have arrived.
TICK_AFTER_NS = 200_000_000


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """What a worker needs to load the scenario itself and run its shard (picklable)."""

    file: str
    variables: dict[str, str]
    target: str | None  # a URL, or "embedded" / "embedded-tls": the worker starts its own server
    overrides: LoadOverrides
    #: The load the parent planned (overrides applied, or a plan of its own such as the ramp of
    #: ``--check-capacity``): the worker runs this, not what its copy of the file says.
    load: LoadSpec | None
    seed: int | None  # the run's seed of drawn think times: every worker draws from the same
    #: A plan's: each population's seed as the parent decided it (in the plan's order).
    population_seeds: tuple[int | None, ...]
    workers: int | None
    shard: int
    shards: int
    source_addresses: tuple[str, ...]


async def run_workers(
    scenario: Scenario,
    limits: LimitPlan,
    *,
    target: str | None,
    overrides: LoadOverrides,
    variables: Mapping[str, str] | None,
    progress: Progress | None,
    handle_signals: bool = True,
    live: LiveView | None = None,
) -> RunResult:
    """Run ``scenario`` (overrides applied) over ``limits.workers`` processes; merge exactly."""
    pool = WorkerPool(
        scenario,
        limits,
        target=target,
        overrides=overrides,
        variables=variables,
        progress=progress,
        handle_signals=handle_signals,
        live=live,
    )
    return await pool.run()


class WorkerPool:
    """One run over ``limits.workers`` spawned processes: spawn, wait until all are ready, start
    them together, tick the monitor once a second until all have ended (killing those past
    the patience, keeping what they sent), then the merged result."""

    def __init__(
        self,
        scenario: Scenario,
        limits: LimitPlan,
        *,
        target: str | None,
        overrides: LoadOverrides,
        variables: Mapping[str, str] | None,
        progress: Progress | None,
        handle_signals: bool = True,
        end_margin_s: float = END_MARGIN_S,
        ready_timeout_s: float = READY_TIMEOUT_S,
        live: LiveView | None = None,
    ) -> None:
        self.live = live
        load = scenario.load
        assert load is not None
        self.scenario = scenario
        self.limits = limits
        self.name = target or scenario.target
        self.overrides = overrides
        self.variables = dict(variables or {})
        self.progress = progress
        self.handle_signals = handle_signals
        self.ready_timeout_s = ready_timeout_s
        self.state = PoolState(limits.workers, patience_ns=round((load.graceful_stop_s + end_margin_s) * 1e9))
        self.processes: list[BaseProcess] = []
        self.conns: list[Connection] = []
        self.interrupted = False
        self.monitor: Monitor | None = None
        self._changed = asyncio.Event()  # a message arrived or a worker ended

    async def run(self) -> RunResult:
        started_at = utc_now_iso()
        # Embedded: each worker starts its own server (see the module docstring); else the URL.
        async with resolved_target(None if is_embedded(self.name) else self.name) as resolved:
            label = f"{self.name} (one server per worker)" if is_embedded(self.name) else resolved.label
            self.spawn()
            guard = on_stop_signals(self.on_signal) if self.handle_signals else contextlib.nullcontext()
            try:
                with guard:
                    await self.wait_ready()
                    start_ns = self.start()
                    self.monitor = Monitor(
                        self.scenario,
                        self.state.total,
                        progress=self.progress,
                        stop=self.stop,
                        live=self.live,
                    )
                    self.monitor.snapshot = lambda: self.result(started_at, label)
                    await self.follow(start_ns)
            finally:
                self.close()
            return self.result(started_at, label)

    # --- the phases ---------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start one process per shard, each loading the scenario itself, and watch its pipe and
        its exit on the running loop."""
        mp = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        shards = self.limits.workers
        with children_start_deaf():
            self._start_processes(mp, shards)
        for number in range(1, shards + 1):
            loop.add_reader(self._conn(number).fileno(), self.receive, number)
            loop.add_reader(self._process(number).sentinel, self.on_exit, number)

    def _start_processes(self, mp: SpawnContext, shards: int) -> None:
        for shard in range(shards):
            job = WorkerJob(
                file=self.scenario.file,
                variables=self.variables,
                target=self.name,
                overrides=self.overrides,
                load=self.scenario.load,
                seed=self.scenario.seed,
                population_seeds=tuple(p.seed for p in self.scenario.populations),
                workers=shards,
                shard=shard,
                shards=shards,
                source_addresses=self.limits.source_addresses,
            )
            parent_conn, child_conn = mp.Pipe(duplex=True)
            process = mp.Process(
                target=worker_main, args=(child_conn, job), daemon=True, name=f"wsload-worker-{shard + 1}"
            )
            process.start()
            child_conn.close()
            self.processes.append(process)
            self.conns.append(parent_conn)

    async def wait_ready(self) -> None:
        """Until every worker is ready (or has ended); ``RunError`` naming those that failed or
        did not start in time, ``KeyboardInterrupt`` on a signal meanwhile."""
        deadline = time.monotonic() + self.ready_timeout_s
        while not self.state.all_started() and not self.interrupted:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await self._changed_within(left)
        not_ready, errors = self.state.not_started(), self.state.errors()
        if not (not_ready or errors or self.interrupted):
            return
        self.stop("start aborted")
        for process in self.processes:
            _kill(process)
        if self.interrupted:
            raise KeyboardInterrupt
        raise RunError(
            "; ".join(errors) or f"worker(s) {not_ready} did not start within {self.ready_timeout_s:g}s"
        )

    def start(self) -> int:
        """Send every living worker the shared start; return it (``CLOCK_MONOTONIC`` ns)."""
        message = self.state.start(time.monotonic_ns() + START_AHEAD_NS, _planned_s(self.scenario))
        for number in self.state.alive():
            self._conn(number).send(message)
        return message.start_ns

    async def follow(self, start_ns: int) -> None:
        """Tick the monitor just after each second until every worker has ended; kill those
        still running past the parent's patience."""
        assert self.monitor is not None
        k = 1
        while not self.state.all_ended():
            next_tick_ns = start_ns + k * 1_000_000_000 + TICK_AFTER_NS
            await self._changed_within(max(0.0, (next_tick_ns - time.monotonic_ns()) / 1e9))
            now_ns = time.monotonic_ns()
            if now_ns >= next_tick_ns:
                k = (now_ns - start_ns) // 1_000_000_000 + 1
                self.monitor.tick(self.state.gauges())
            if self.state.overdue(now_ns):
                for number in self.state.running():
                    self.kill_keeping_deltas(number)
                break

    def stop(self, reason: str) -> None:
        """Stop the run: tell every worker still running (again, on a second signal)."""
        self._send_running(self.state.stop(reason, time.monotonic_ns()))

    def on_signal(self, signum: int) -> None:
        self.interrupted = True
        self.stop(f"interrupted by signal {signum}")

    def close(self) -> None:
        """Stop watching, end the progress line, and reap every process (killing a straggler)."""
        loop = asyncio.get_running_loop()
        for number in range(1, len(self.processes) + 1):
            self._forget(number)
            with contextlib.suppress(Exception):
                loop.remove_reader(self._process(number).sentinel)
        if self.monitor is not None:
            self.monitor.done()
        for process, conn in zip(self.processes, self.conns, strict=True):
            process.join(timeout=5)
            if process.is_alive():
                _kill(process)
                process.join(timeout=5)
            with contextlib.suppress(Exception):
                conn.close()

    def result(self, started_at: str, label: str) -> RunResult:
        """The merged result, naming incomplete workers and how each died."""
        assert self.monitor is not None
        state = self.state
        exit_codes = {n: p.exitcode for n, p in enumerate(self.processes, 1)}
        if self.scenario.populations:
            return plan_result(
                self.scenario,
                state.total,
                started_at=started_at,
                duration_s=(time.monotonic_ns() - state.total.start_ns) / 1e9,
                target=label,
                limits=self.limits,
                max_connections=self.monitor.max_connections,
                interrupted=self.interrupted,
                stop_reason=state.final_stop_reason(),
                stopped_at_s=state.stopped_at_s(),
                incomplete_workers=state.incomplete(),
                problems=state.problems(exit_codes),
                tls=state.tls(),
                own_stops=state.own_stops(),
                max_active=state.max_active_each(),
            )
        own = state.own_stops().get("")
        stopped_at_s = state.stopped_at_s()
        if stopped_at_s is None and own is not None:
            stopped_at_s = own[1]  # every worker ran out of its data: the plan ended there
        return load_result(
            self.scenario,
            state.total,
            started_at=started_at,
            duration_s=(time.monotonic_ns() - state.total.start_ns) / 1e9,
            target=label,
            limits=self.limits,
            max_vus=self.monitor.max_vus or state.max_active(),
            max_connections=self.monitor.max_connections,
            interrupted=self.interrupted,
            stop_reason=state.final_stop_reason(),
            stopped_at_s=stopped_at_s,
            incomplete_workers=state.incomplete(),
            problems=state.problems(exit_codes),
            tls=state.tls(),
        )

    # --- messages and exits (called by the loop) ----------------------------------------------

    def receive(self, number: int) -> None:
        """Reduce every whole message waiting in worker ``number``'s pipe; a closed pipe means
        the worker died."""
        conn = self._conn(number)
        try:
            while conn.poll():
                self._apply(number, conn.recv())
        except (EOFError, OSError):
            self._died(number)
        self._changed.set()

    def on_exit(self, number: int) -> None:
        """Worker ``number``'s process ended: read what is still in its pipe before deciding it
        died."""
        if not self.state.worker(number).done:
            self.receive(number)
        if not self.state.worker(number).done:
            self._died(number)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._process(number).sentinel)
        self._changed.set()

    def kill_keeping_deltas(self, number: int) -> None:
        """Kill worker ``number``, keeping every delta it wrote before (whole messages; one cut
        by the kill ends the reading); it is then named incomplete in the report."""
        process = self._process(number)
        _kill(process)
        process.join(timeout=2)
        self.receive(number)
        self._died(number)

    def _apply(self, number: int, message: WorkerMessage) -> None:
        stop = self.state.apply(number, message, time.monotonic_ns())
        if self.state.worker(number).done:
            self._forget(number)
        if stop is not None:
            self._send_running(stop)

    def _died(self, number: int) -> None:
        self.state.died(number)
        self._forget(number)

    def _send_running(self, message: ParentMessage) -> None:
        for number in self.state.running():
            with contextlib.suppress(OSError, ValueError):
                self._conn(number).send(message)

    def _forget(self, number: int) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._conn(number).fileno())

    async def _changed_within(self, timeout_s: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def _conn(self, number: int) -> Connection:
        return self.conns[number - 1]

    def _process(self, number: int) -> BaseProcess:
        return self.processes[number - 1]


def _planned_s(scenario: Scenario) -> float | None:
    assert scenario.load is not None
    return plan_duration(scenario.load)


def _kill(process: BaseProcess) -> None:
    with contextlib.suppress(Exception):
        if process.is_alive():
            process.kill()


# --- the worker process ---------------------------------------------------------------------------


def worker_main(conn: Connection, job: WorkerJob) -> None:
    """Entry point of a worker process: load the scenario, wait for the start, run the shard."""
    # Ctrl-C reaches the whole process group: the parent decides and forwards (``Stop``).
    ignore_sigint()
    runner = asyncio.Runner() if uvloop is None else asyncio.Runner(loop_factory=uvloop.new_event_loop)
    with runner:
        try:
            runner.run(_worker(conn, job))
        except Exception as exc:  # a bug must reach the parent as text, not a silent exit
            with contextlib.suppress(Exception):
                conn.send(Failed(f"{type(exc).__name__}: {exc}"))
    conn.close()


async def _worker(conn: Connection, job: WorkerJob) -> None:
    raise_nofile()
    try:
        scenario = load_scenario(job.file, variables=job.variables, target=job.target)
        scenario = replace(apply_overrides(scenario, job.overrides), load=job.load, seed=job.seed)
        if scenario.populations:
            seeds = job.population_seeds
            scenario = replace(
                scenario,
                populations=tuple(
                    replace(p, seed=s) for p, s in zip(scenario.populations, seeds, strict=True)
                ),
            )
    except WsloadError as exc:
        conn.send(Failed(str(exc)))
        return
    try:
        async with resolved_target(job.target) as resolved:
            await _run_shard(ParentLink(conn), job, scenario, resolved.url, resolved.ca_pem)
    except WsloadError as exc:  # the embedded server could not start
        conn.send(Failed(str(exc)))


async def _run_shard(
    link: ParentLink, job: WorkerJob, scenario: Scenario, target_url: str | None, ca_pem: str | None
) -> None:
    link.send(Ready())
    first = await link.receive()
    if isinstance(first, Stop):  # stopped before the start
        link.send(Done(RunRecorder(0).take_interval(), WorkerInfo(stop_reason=first.reason)))
        return
    shard = ShardWorker(link, job, scenario, first.start_ns, target_url, ca_pem)
    await shard.run()


class ParentLink:
    """A worker's end of its pipe: typed sends, and the parent's messages queued as they arrive
    (read on the worker's loop, so a stop is seen between any two of its callbacks)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.inbox: asyncio.Queue[ParentMessage] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(conn.fileno(), self._on_readable)

    def send(self, message: WorkerMessage) -> None:
        self.conn.send(message)

    async def receive(self) -> ParentMessage:
        return await self.inbox.get()

    def _on_readable(self) -> None:
        try:
            while self.conn.poll():
                self.inbox.put_nowait(self.conn.recv())
        except (EOFError, OSError):  # the parent is gone: stop
            self.loop.remove_reader(self.conn.fileno())
            self.inbox.put_nowait(Stop("the parent process went away"))


class ShardWorker:
    """A worker's run of its shard from the shared start: a ``Tick`` each second, the engine
    stopped on the parent's ``Stop`` (or SIGTERM), and ``Done`` with the last delta."""

    def __init__(
        self,
        link: ParentLink,
        job: WorkerJob,
        scenario: Scenario,
        start_ns: int,
        target_url: str | None,
        ca_pem: str | None,
    ) -> None:
        self.link = link
        self.scenario = scenario
        self.recorder = RunRecorder(start_ns)
        self.ctx = RunContext(scenario, self.recorder, target_url, ca_pem)
        self.populations = contexts(scenario, self.recorder, target_url, ca_pem)
        self.driver = ShardDriver(
            self.ctx,
            start_ns=start_ns,
            on_second=self.tick,
            shard=job.shard,
            shards=job.shards,
            source_addresses=job.source_addresses,
            worker=str(job.shard + 1),
            populations=self.populations,
        )

    def tick(self, gauges: Gauges) -> None:
        self.link.send(Tick(self.recorder.take_interval(), gauges))

    async def listen(self) -> None:
        """Stop the engine on each ``Stop`` (a second one cancels in-flight iterations)."""
        while True:
            message = await self.link.receive()
            if isinstance(message, Stop):
                self.driver.stop(message.reason)
                # What was measured up to the stop is in the parent now, even if the graceful
                # end then outlasts the parent's patience.
                with contextlib.suppress(OSError, ValueError):
                    self.tick(self.driver.gauges())

    async def run(self) -> None:
        driver = self.driver
        loop = asyncio.get_running_loop()
        listener = asyncio.ensure_future(self.listen())
        loop.add_signal_handler(signal.SIGTERM, driver.stop, "worker got SIGTERM")
        try:
            await self.driver.run()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        tls = plan_tls(self.populations) if self.populations else tls_info(self.scenario, self.ctx)
        stops = tuple((name, reason, at) for name, (reason, at) in driver.own_stops().items())
        info = WorkerInfo(driver.max_active, driver.stop_reason, tls, stops, driver.max_active_each())
        self.link.send(Done(self.recorder.take_interval(), info))
