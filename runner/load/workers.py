"""A load run over worker processes: each runs its shard; the parent merges their measurements.

Protocol over one ``multiprocessing`` Pipe per worker (spawn context: a fresh interpreter, no
inherited event loop or sockets):

    worker -> parent   ("ready", None)                 scenario loaded, waiting for the start
                       ("tick", delta, gauges)         every second: ``RunRecorder.take_interval()``,
                                                       and (vus, connections, paused) now,
                                                       and at once when a stop arrives
                       ("done", delta, info)           the last delta; info: max_active, tls, reason
                       ("error", text)                 could not load or run (the run fails)
    parent -> worker   ("start", start_ns)             a shared start on the monotonic clock
                       ("stop", reason)                SIGINT/SIGTERM or a lost abort_on_fail

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
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from runner.engine.embedded import is_embedded, resolved_target
from runner.errors import RunError
from runner.load.driver import Gauges
from runner.load.limits import LimitPlan
from runner.load.monitor import Monitor, Progress
from runner.load.result import load_result
from runner.load.settings import LoadOverrides
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult, TlsInfo
from runner.runtime import on_stop_signals, utc_now_iso
from runner.scenario.model import Scenario

__all__ = ["WorkerJob", "run_workers", "worker_main"]

#: Seconds a worker may take to start (spawn, imports, loading the scenario).
READY_TIMEOUT_S = 60.0
#: After the plan and the grace period, how long the parent waits before killing a worker.
END_MARGIN_S = 15.0


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """What a worker needs to load the scenario itself and run its shard (picklable)."""

    file: str
    variables: dict[str, str]
    target: str | None  # a URL, or "embedded" / "embedded-tls": the worker starts its own server
    overrides: LoadOverrides
    workers: int | None
    shard: int
    shards: int
    source_addresses: tuple[str, ...]


class _Worker:
    def __init__(self, number: int, process: Any, conn: Connection) -> None:
        self.number = number  # 1-based, as reports name it
        self.process = process
        self.conn = conn
        self.ready = False
        self.done = False
        self.dead = False
        self.error = ""
        self.gauges = Gauges()
        self.info: dict[str, Any] = {}


async def run_workers(
    scenario: Scenario,
    limits: LimitPlan,
    *,
    target: str | None,
    overrides: LoadOverrides,
    variables: Mapping[str, str] | None,
    progress: Progress | None,
    handle_signals: bool = True,
) -> RunResult:
    """Run ``scenario`` (overrides applied) over ``limits.workers`` processes; merge exactly."""
    load = scenario.load
    assert load is not None
    started_at = utc_now_iso()
    mp = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    interrupted = False
    name = target or scenario.target
    # Embedded: each worker starts its own server (see the module docstring); else the URL as is.
    async with resolved_target(None if is_embedded(name) else name) as resolved:
        label = f"{name} (one server per worker)" if is_embedded(name) else resolved.label
        workers: list[_Worker] = []
        for shard in range(limits.workers):
            job = WorkerJob(
                file=scenario.file,
                variables=dict(variables or {}),
                target=name,
                overrides=overrides,
                workers=limits.workers,
                shard=shard,
                shards=limits.workers,
                source_addresses=limits.source_addresses,
            )
            parent_conn, child_conn = mp.Pipe(duplex=True)
            process = mp.Process(
                target=worker_main, args=(child_conn, job), daemon=True, name=f"wsload-worker-{shard + 1}"
            )
            process.start()
            child_conn.close()
            workers.append(_Worker(shard + 1, process, parent_conn))
        total = RunRecorder(0)
        changed = asyncio.Event()
        stop_reason = ""
        stop_deadline = float("inf")  # when workers told to stop must have ended
        stopped_at_ns: int | None = None

        def stop(reason: str) -> None:
            nonlocal stop_reason, stop_deadline, stopped_at_ns
            if not stop_reason:
                stop_reason = reason
                stopped_at_ns = time.monotonic_ns()
                stop_deadline = time.monotonic() + load.graceful_stop_s + END_MARGIN_S
            # (sent again on a second signal: workers then cancel in-flight iterations at once)
            for w in workers:
                if not w.done and not w.dead:
                    with contextlib.suppress(OSError, ValueError):
                        w.conn.send(("stop", reason))

        def on_message(w: _Worker) -> None:
            try:
                while w.conn.poll():
                    message = w.conn.recv()
                    kind = message[0]
                    if kind == "ready":
                        w.ready = True
                    elif kind == "tick":
                        total.merge(message[1])
                        w.gauges = Gauges(*message[2])
                    elif kind == "done":
                        total.merge(message[1])
                        w.info = message[2]
                        w.done = True
                        w.gauges = Gauges()
                        _forget(w)
                    elif kind == "error":
                        w.error = message[1]
                        w.done = True
                        _forget(w)
                        stop(f"worker {w.number}: {w.error}")
            except (EOFError, OSError):
                _died(w)
            changed.set()

        def on_exit(w: _Worker) -> None:
            if not w.done:
                # Read what is still in the pipe before deciding the worker died.
                on_message(w)
            if not w.done:
                _died(w)
            with contextlib.suppress(Exception):
                loop.remove_reader(w.process.sentinel)
            changed.set()

        def _kill_keeping_deltas(w: _Worker) -> None:
            # Every delta the worker wrote before it was killed is kept: read what is still in
            # the pipe (whole messages; a message cut by the kill ends the reading), then it is
            # named as incomplete in the report.
            _terminate(w)
            w.process.join(timeout=2)
            on_message(w)
            _died(w)

        def _forget(w: _Worker) -> None:
            with contextlib.suppress(Exception):
                loop.remove_reader(w.conn.fileno())

        def _died(w: _Worker) -> None:
            if w.done or w.dead:
                return
            w.dead = True
            w.gauges = Gauges()
            _forget(w)

        for w in workers:
            loop.add_reader(w.conn.fileno(), on_message, w)
            loop.add_reader(w.process.sentinel, on_exit, w)

        def on_signal(signum: int) -> None:
            nonlocal interrupted
            interrupted = True
            stop(f"interrupted by signal {signum}")

        monitor: Monitor | None = None
        guard = on_stop_signals(on_signal) if handle_signals else contextlib.nullcontext()
        try:
            with guard:
                deadline = time.monotonic() + READY_TIMEOUT_S
                while not all(w.ready or w.done or w.dead for w in workers) and not interrupted:
                    changed.clear()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), left)
                not_ready = [w.number for w in workers if not (w.ready or w.done or w.dead)]
                errors = [f"worker {w.number}: {w.error}" for w in workers if w.error]
                if not_ready or errors or interrupted:
                    stop("start aborted")
                    for w in workers:
                        _terminate(w)
                    if interrupted:
                        raise KeyboardInterrupt
                    raise RunError(
                        "; ".join(errors)
                        or f"worker(s) {not_ready} did not start within {READY_TIMEOUT_S:g}s"
                    )
                start_ns = time.monotonic_ns() + 100_000_000
                total.start_ns = start_ns
                for w in workers:
                    if not w.dead:
                        w.conn.send(("start", start_ns))
                monitor = Monitor(scenario, total, progress=progress, stop=stop)
                planned = _planned_s(scenario)
                hard_end = (
                    None
                    if planned is None
                    else start_ns / 1e9 + planned + load.graceful_stop_s + END_MARGIN_S
                )
                k = 1
                while not all(w.done or w.dead for w in workers):
                    next_tick = (start_ns + k * 1_000_000_000 + 200_000_000) / 1e9
                    changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), max(0.0, next_tick - time.monotonic()))
                    now = time.monotonic()
                    if now >= next_tick:
                        k = int((now * 1e9 - start_ns) // 1_000_000_000) + 1
                        monitor.tick(
                            Gauges(
                                sum(w.gauges.vus for w in workers),
                                sum(w.gauges.connections for w in workers),
                                sum(w.gauges.paused for w in workers),
                            )
                        )
                    if (hard_end is not None and now > hard_end) or now > stop_deadline:
                        for w in workers:
                            if not w.done and not w.dead:
                                _kill_keeping_deltas(w)
                        break
        finally:
            for w in workers:
                with contextlib.suppress(Exception):
                    loop.remove_reader(w.conn.fileno())
                with contextlib.suppress(Exception):
                    loop.remove_reader(w.process.sentinel)
            if monitor is not None:
                monitor.done()
            for w in workers:
                w.process.join(timeout=5)
                if w.process.is_alive():
                    _terminate(w)
                    w.process.join(timeout=5)
                with contextlib.suppress(Exception):
                    w.conn.close()
        assert monitor is not None
        duration_s = (time.monotonic_ns() - total.start_ns) / 1e9
        incomplete = [w.number for w in workers if w.dead]
        problems = [f"worker {w.number}: {w.error}" for w in workers if w.error]
        for w in workers:
            if w.dead:
                code = w.process.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                problems.append(f"worker {w.number} died ({how})")
        reasons = [w.info.get("stop_reason", "") for w in workers if w.info]
        return load_result(
            scenario,
            total,
            started_at=started_at,
            duration_s=duration_s,
            target=label,
            limits=limits,
            max_vus=monitor.max_vus or sum(w.info.get("max_active", 0) for w in workers),
            max_connections=monitor.max_connections,
            interrupted=interrupted,
            stop_reason=stop_reason or next((r for r in reasons if r), ""),
            stopped_at_s=None if stopped_at_ns is None else (stopped_at_ns - total.start_ns) / 1e9,
            incomplete_workers=incomplete,
            problems=problems,
            tls=_merged_tls(workers),
        )


def _planned_s(scenario: Scenario) -> float | None:
    from runner.scenario.plan import plan_duration

    assert scenario.load is not None
    return plan_duration(scenario.load)


def _terminate(w: _Worker) -> None:
    with contextlib.suppress(Exception):
        if w.process.is_alive():
            w.process.kill()


def _merged_tls(workers: list[_Worker]) -> TlsInfo:
    infos = [w.info["tls"] for w in workers if w.info.get("tls")]
    if not infos:
        return TlsInfo()
    return TlsInfo(
        verified=all(i["verified"] for i in infos),
        ignored_errors=tuple(sorted({e for i in infos for e in i["ignored_errors"]})),
        allowed=tuple(sorted({e for i in infos for e in i["allowed"]})),
    )


# --- the worker process ---------------------------------------------------------------------------


def worker_main(conn: Connection, job: WorkerJob) -> None:
    """Entry point of a worker process: load the scenario, wait for the start, run the shard."""
    # Ctrl-C reaches the whole process group: the parent decides and forwards ("stop").
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        runner: Any = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        try:
            runner.run(_worker(conn, job))
        except Exception as exc:  # a bug must reach the parent as text, not a silent exit
            with contextlib.suppress(Exception):
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.close()


async def _worker(conn: Connection, job: WorkerJob) -> None:
    from runner.errors import WsloadError
    from runner.load.limits import raise_nofile
    from runner.load.settings import apply_overrides
    from runner.loader import load_scenario

    raise_nofile()
    try:
        scenario = load_scenario(job.file, variables=job.variables, target=job.target)
        scenario = apply_overrides(scenario, job.overrides)
    except WsloadError as exc:
        conn.send(("error", str(exc)))
        return
    try:
        async with resolved_target(job.target) as resolved:
            await _run_shard(conn, job, scenario, resolved.url, resolved.ca_pem)
    except WsloadError as exc:  # the embedded server could not start
        conn.send(("error", str(exc)))


async def _run_shard(
    conn: Connection, job: WorkerJob, scenario: Scenario, target_url: str | None, ca_pem: str | None
) -> None:
    from runner.engine.check import tls_info
    from runner.engine.vu import RunContext
    from runner.load.driver import ShardDriver

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def on_readable() -> None:
        try:
            while conn.poll():
                inbox.put_nowait(conn.recv())
        except (EOFError, OSError):  # the parent is gone: stop
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(("stop", "the parent process went away"))

    loop.add_reader(conn.fileno(), on_readable)
    conn.send(("ready", None))
    kind, start_ns = await inbox.get()
    if kind != "start":
        conn.send(("done", RunRecorder(0).take_interval(), {"stop_reason": str(start_ns)}))
        return
    recorder = RunRecorder(start_ns)
    ctx = RunContext(scenario, recorder, target_url, ca_pem)

    def send(gauges: Gauges) -> None:
        conn.send(("tick", recorder.take_interval(), (gauges.vus, gauges.connections, gauges.paused)))

    driver = ShardDriver(
        ctx,
        start_ns=start_ns,
        on_second=send,
        shard=job.shard,
        shards=job.shards,
        source_addresses=job.source_addresses,
        worker=str(job.shard + 1),
    )
    engine = driver.engine

    async def listen() -> None:
        while True:
            kind, reason = await inbox.get()
            if kind == "stop":
                engine.stop(str(reason))
                # What was measured up to the stop is in the parent now, even if the graceful
                # end then outlasts the parent's patience.
                with contextlib.suppress(OSError, ValueError):
                    send(driver.gauges())

    listener = asyncio.ensure_future(listen())
    loop.add_signal_handler(signal.SIGTERM, engine.stop, "worker got SIGTERM")
    try:
        await driver.run()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    tls = tls_info(scenario, ctx)
    conn.send(
        (
            "done",
            recorder.take_interval(),
            {
                "max_active": engine.max_active,
                "stop_reason": engine.stop_reason,
                "tls": {
                    "verified": tls.verified,
                    "ignored_errors": list(tls.ignored_errors),
                    "allowed": list(tls.allowed),
                },
            },
        )
    )
