"""``wsload run FILE --cluster tcp://SCHEDULER:8786``: the load plan over a Dask cluster's workers.

No cluster protocol of our own: ``dask.distributed`` places the shards, carries progress and
reports failures. The client (this process) splits the plan into N shards (one per Dask worker,
or ``--workers N``) and submits ``shard_task`` once per shard, each pinned loosely to one worker.

- **Where a shard runs.** A Dask task runs in a thread of the worker's executor, not on the
  worker's own event loop; ``shard_task`` starts a fresh event loop (uvloop) in that thread and
  runs ``runner.cluster.shard.run_shard``: the same engine as a local run. (A subprocess would
  isolate the shard from the worker's GIL work, but would make a lost worker lose the stream
  too and double the start-up; the worker's own heartbeat work is small.)
- **Start together.** Every shard gets one wall-clock start (``--start-at``, or now + 3 s so the
  tasks reach the workers and load the scenario); each turns it into its own monotonic start.
- **Progress.** Once a second each shard puts its interval delta (``RunRecorder.take_interval``)
  with its gauges on a ``distributed.Queue``; the client merges them into a live total for the
  progress line and ``abort_on_fail``, and keeps each shard's own sum as its partial result.
- **Stop together.** SIGINT/SIGTERM or a lost ``abort_on_fail`` threshold sets a
  ``distributed.Event``; every shard polls it once a second and stops gracefully, then returns its
  full shard report.
- **A lost worker.** Its task fails (``KilledWorker``) or Dask reschedules it; a rescheduled shard
  that had already started (claimed a ``distributed.Variable``) refuses to run again (it would
  count twice), returning "late"; one that died before starting simply runs elsewhere.
  Either way, or when a shard is silent for ``SILENT_S``, it is reported lost: the deltas it
  streamed are kept and the merged run is marked incomplete.

The final result is ``runner.merge.merge_results`` of the shard reports: exactly what
``wsload merge`` gives for the same shards.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.errors import RunError
from runner.load.driver import Gauges
from runner.load.merge import ShardReport, flatten, merge_results, parse_shard, shard_info
from runner.load.monitor import LiveView, Monitor, Progress
from runner.load.result import evaluate_load
from runner.load.settings import LoadOverrides, apply_overrides
from runner.results.codec import encode
from runner.results.load_figures import LoadSummary
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult, RunSettings, build_result
from runner.scenario.model import Scenario

__all__ = ["INSTALL_HINT", "ShardJob", "StopFlag", "run_on_cluster", "shard_task"]

INSTALL_HINT = "--cluster needs Dask: pip install 'wsload[cluster]'"
#: Without --start-at, the plan starts this long after the tasks are submitted.
START_DELAY_S = 3.0
#: A running shard silent this long (no progress message) is taken as lost.
SILENT_S = 15.0


class StopFlag:
    """A stop request, set from a signal handler or another thread; the first reason wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason = ""

    def set(self, reason: str) -> None:
        with self._lock:
            if not self.reason:
                self.reason = reason


@dataclass(frozen=True, slots=True)
class ShardJob:
    """What a Dask worker needs to run one shard (picklable; the scenario travels as text)."""

    run_id: str
    index: int
    count: int
    file: str
    text: str
    variables: dict[str, str]
    target: str | None
    overrides: LoadOverrides
    start_unix_ns: int
    queue: str
    stop_event: str


# --- on the Dask worker ----------------------------------------------------------------------------


def shard_task(job: ShardJob) -> dict[str, Any]:
    """Run one shard in this task thread on a fresh event loop; its shard report (JSON) or
    ``{"late": ...}`` when Dask runs it again after its worker was lost (see ``_claim``)."""
    import asyncio

    from distributed import Event, Queue

    from runner.cluster.shard import run_shard
    from runner.loader import load_scenario_text

    if not _claim(job):
        return {"late": True, "index": job.index}
    queue = Queue(job.queue)  # type: ignore[no-untyped-call]
    stop_event = Event(job.stop_event)  # type: ignore[no-untyped-call]
    stop_reason = StopFlag()
    finished = threading.Event()
    sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wsload-progress")
    seq = [0]
    me = {"pid": os.getpid(), "host": os.uname().nodename}

    def watch_stop() -> None:  # the cluster-wide stop, polled off the shard's loop
        while not finished.is_set():
            try:
                if stop_event.wait(timeout=1.0):  # type: ignore[no-untyped-call]
                    stop_reason.set("stopped by the client")
                    return
            except Exception:  # the scheduler went away: stop, keep what was measured
                stop_reason.set("lost the Dask scheduler")
                return

    def on_tick(delta: dict[str, Any], vus: int, conns: int) -> None:
        seq[0] += 1
        message = {"index": job.index, "seq": seq[0], "delta": delta, "vus": vus, "conns": conns, **me}
        sender.submit(queue.put, message)  # never block the shard's loop on the scheduler

    watcher = threading.Thread(target=watch_stop, name="wsload-stop-watch", daemon=True)
    watcher.start()
    scenario = load_scenario_text(
        job.text, job.file, variables=job.variables, target=job.target, base_dir=Path(job.file).parent
    )
    try:
        import uvloop

        runner: Any = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    try:
        with runner:
            result = runner.run(
                run_shard(
                    scenario,
                    index=job.index,
                    count=job.count,
                    target=job.target,
                    overrides=job.overrides,
                    start_unix_ns=job.start_unix_ns,
                    handle_signals=False,
                    on_tick=on_tick,
                    should_stop=lambda: stop_reason.reason,
                )
            )
    finally:
        finished.set()
        sender.shutdown(wait=True)
    doc: dict[str, Any] = encode(result)
    doc["settings"]["shard"]["worker"] = me
    return doc


def _claim(job: ShardJob) -> bool:
    """Whether this is the shard's first run. Dask runs a task again when its worker dies; the
    shard had then measured (and streamed) part of its plan, so a second run would count twice.
    A run that died before claiming had measured nothing, and may run again."""
    from distributed import Variable

    claimed = Variable(f"wsload-{job.run_id}-claimed-{job.index}")  # type: ignore[no-untyped-call]
    try:
        claimed.get(timeout=0.2)  # type: ignore[no-untyped-call]
    except TimeoutError:
        claimed.set(os.getpid())  # type: ignore[no-untyped-call]
        return True
    return False


# --- on the client ---------------------------------------------------------------------------------


@dataclass
class _Shard:
    index: int
    future: Any
    partial: RunRecorder = field(default_factory=lambda: RunRecorder(0))
    vus: int = 0
    conns: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    seen: bool = False
    doc: dict[str, Any] | None = None
    lost: str = ""
    where: str = ""


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise RunError(INSTALL_HINT) from exc
    return distributed


def run_on_cluster(
    scenario_path: str,
    variables: Mapping[str, str] | None,
    target: str | None,
    overrides: LoadOverrides | None,
    address: str,
    *,
    shards: int | None = None,
    start_unix_ns: int | None = None,
    progress: Progress | None = None,
    stop: StopFlag | None = None,
    connect_timeout_s: float = 10.0,
    live_view: LiveView | None = None,
) -> RunResult:
    """Run the scenario's load over the Dask cluster at ``address`` (see the module docstring).
    ``RunError`` (exit 3) without Dask or without a reachable scheduler with workers."""
    distributed = _import_distributed()
    from runner.loader import load_scenario

    variables = dict(variables or {})
    overrides = overrides or LoadOverrides()
    scenario = apply_overrides(load_scenario(scenario_path, variables=variables, target=target), overrides)
    load = scenario.load
    assert load is not None
    text = Path(scenario_path).read_text(encoding="utf-8")
    stop = stop or StopFlag()
    try:
        client = distributed.Client(address, timeout=connect_timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise RunError(f"--cluster {address}: cannot reach the Dask scheduler: {exc}") from exc
    with client:
        workers = sorted(client.ncores())  # address -> threads, every worker (all versions)
        if not workers:
            raise RunError(f"--cluster {address}: the Dask cluster has no workers")
        n = shards or len(workers)
        run_id = uuid.uuid4().hex[:12]
        queue = distributed.Queue(f"wsload-{run_id}-progress", client=client)
        stop_event = distributed.Event(f"wsload-{run_id}-stop", client=client)
        start = start_unix_ns or time.time_ns() + int(START_DELAY_S * 1e9)
        mono_start = time.monotonic_ns() + (start - time.time_ns())
        live = RunRecorder(mono_start)
        view = live_view
        common = (scenario.file, text, variables, target, overrides, start, queue.name, stop_event.name)
        jobs = [ShardJob(run_id, k, n, *common) for k in range(1, n + 1)]
        items = [_Shard(job.index, _submit(client, workers, job)) for job in jobs]
        stopped = _follow(scenario, items, queue, stop_event, live, start, progress, stop, view)
    result = merge_results([_report(s, scenario, n, start) for s in items])
    return _with_stop(result, stopped, interrupted=bool(stop.reason))


def _follow(
    scenario: Scenario,
    items: list[_Shard],
    queue: Any,
    stop_event: Any,
    live: RunRecorder,
    start_unix_ns: int,
    progress: Progress | None,
    stop: StopFlag,
    view: LiveView | None = None,
) -> str:
    """Follow the shards until each has ended or is lost: their progress into ``live``, the
    monitor ticked once a second, a stop (a signal, a lost ``abort_on_fail``) passed on to every
    shard. Returns the reason the run was stopped ("" when it ran its course)."""
    stopped = ""

    def request_stop(reason: str) -> None:
        nonlocal stopped
        if not stopped:
            stopped = reason
            stop_event.set()

    monitor = Monitor(scenario, live, progress=progress, stop=request_stop, live=view)
    monitor.snapshot = lambda: _live_result(scenario, live, start_unix_ns)
    tick_at = start_unix_ns / 1e9 + 1.0
    try:
        while True:
            _drain(queue, items, live)
            _check_shards(items)
            if stop.reason:
                request_stop(stop.reason)
            if time.time() >= tick_at:
                tick_at = max(tick_at + 1.0, time.time())
                monitor.tick(Gauges(sum(s.vus for s in items), sum(s.conns for s in items)))
            if all(s.doc is not None or s.lost for s in items):
                break
            time.sleep(0.1)
        _drain(queue, items, live)
    finally:
        monitor.done()
        with _quiet():
            stop_event.set()  # shards still running (silent, cancelled) stop too
    return stopped


def _live_result(scenario: Scenario, live: RunRecorder, start_unix_ns: int) -> RunResult:
    """The run so far as the client sees it (the shards' streamed intervals, merged): what a live
    view shows while the shards run; the run's result is the merge of their reports."""
    assert scenario.load is not None
    whole = flatten(live) if scenario.populations else live
    result = build_result(
        whole,
        scenario_name=scenario.name,
        scenario_file=scenario.file,
        started_at="",
        duration_s=max(time.time() - start_unix_ns / 1e9, 1e-9),
        target="cluster",
        settings=RunSettings(mode="load"),
    )
    return evaluate_load(result, scenario.thresholds, scenario.load)


def _submit(client: Any, workers: list[str], job: ShardJob) -> Any:
    """Submit one shard, placed on a worker of its own where there are enough (round robin)."""
    return client.submit(
        shard_task,
        job,
        key=f"wsload-{job.run_id}-shard-{job.index}",
        workers=[workers[(job.index - 1) % len(workers)]],
        allow_other_workers=True,
        pure=False,
    )


def _check_shards(items: list[_Shard]) -> None:
    """Collect the shards that ended; give up on those silent for ``SILENT_S`` (worker lost)."""
    now = time.monotonic()
    for s in items:
        if s.doc is None and not s.lost and s.future.done():
            _finish(s)
        elif s.doc is None and not s.lost and s.seen and now - s.last_seen > SILENT_S:
            s.lost = f"silent for {SILENT_S:g}s (worker lost?)"
            s.future.cancel()


def _with_stop(result: RunResult, stopped: str, *, interrupted: bool) -> RunResult:
    """The client's reason to stop every shard, on the merged result: a signal makes the run
    interrupted (exit 130), a lost ``abort_on_fail`` threshold fails it."""
    if not stopped:
        return result
    load = result.settings.load
    if load is not None:
        result = replace(result, settings=replace(result.settings, load=replace(load, stop_reason=stopped)))
    if interrupted:
        return replace(result, interrupted=True, passed=False, exit_code=130)
    error = "; ".join(e for e in (result.error, stopped) if e)
    return replace(result, error=error, passed=False, exit_code=result.exit_code or 1)


def _drain(queue: Any, items: list[_Shard], live: RunRecorder) -> None:
    try:
        messages = queue.get(batch=True)
    except Exception:  # the queue is gone with the scheduler; the futures say the rest
        return
    for m in messages:
        s = items[int(m["index"]) - 1]
        if s.doc is not None:  # a finished shard's report has it all
            continue
        s.partial.merge(m["delta"])
        live.merge(m["delta"])
        s.vus, s.conns = int(m["vus"]), int(m["conns"])
        s.last_seen = time.monotonic()
        s.seen = True
        s.where = f"{m.get('host', '?')} pid {m.get('pid', '?')}"


def _finish(s: _Shard) -> None:
    try:
        doc = s.future.result()
    except Exception as exc:  # KilledWorker, CancelledError, an error in the shard
        s.lost = f"{type(exc).__name__}: {exc}"
        return
    if doc.get("late"):
        s.lost = "its worker was lost; Dask ran it again, which was refused (it would count twice)"
        return
    s.doc = doc


def _report(s: _Shard, scenario: Any, count: int, start_unix_ns: int) -> ShardReport:
    """The shard's own report, or for a lost shard one built from what it streamed."""
    if s.doc is not None:
        return parse_shard(f"dask shard {s.index}/{count}", s.doc)
    rec = s.partial
    where = f" on {s.where}" if s.where else ""
    result = build_result(
        rec,
        scenario_name=scenario.name,
        scenario_file=scenario.file,
        started_at="",
        duration_s=max(0.0, time.time() - start_unix_ns / 1e9),
        target="",
        error=f"lost{where}: {s.lost}",
        settings=RunSettings(mode="load", load=LoadSummary(model=scenario.load.model, workers=1)),
    )
    shard = shard_info(
        scenario, index=s.index, count=count, start_unix_ns=start_unix_ns, recorder=rec, lost=True
    )
    doc = encode(replace(result, settings=replace(result.settings, shard=shard)))
    return parse_shard(f"dask shard {s.index}/{count} (lost)", doc)


class _quiet:
    """Suppress anything while the cluster is torn down (a scheduler already gone)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
