"""The load engine: plans (pure) and the processes that follow them.

In-process API (what ``wsload run`` and the benchmarks call)::

    from runner.load import LoadOverrides, Progress, run_load

    result: RunResult = await run_load(
        scenario,                      # runner.loader.load_scenario(path, variables=..., target=...)
        target=None,                   # overrides scenario.target; "embedded" starts the test server
                                       # (in this process; with workers, one in each worker)
        overrides=LoadOverrides(vus=2000, duration_s=20.0),   # --vus --duration --rate --iterations
                                       # --max-vus --threshold --source-address; None: as the file says
        workers=1,                     # 1: this process, on the running loop; N > 1: N spawned
                                       # processes (each loads scenario.file itself); None: decide
                                       # (one per core from 500 connections or starts/s, else 1)
        progress=None,                 # a Progress() for the live line on stderr
        variables=None,                # the --var values, so workers load the file as the parent did
        handle_signals=True,           # SIGINT/SIGTERM stop gracefully (main thread only)
        client_factory=None,           # one WebSocketClient per virtual user by default
    )

Workers load ``scenario.file`` themselves (a scenario built from text in memory runs with
``workers=1`` only); ``start_ns`` is shared on the monotonic clock; each sends a per-second delta
of its recorder, which the parent merges exactly (``RunRecorder.merge``).

``run_load`` raises ``RunError`` before anything runs when a limit (open files, ephemeral ports)
would be hit; ``UsageError`` for bad overrides. The result's ``settings.load`` (a
``LoadSummary``) holds the load figures (model, workers, VUs, achieved rate, lag, dropped,
incomplete workers, stop reason).

Modules: ``settings`` (overrides, ``--threshold``), ``limits`` (checked before the run),
``engine`` (one process's shard, closed and open model), ``health`` (the generator watching
itself), ``driver`` (engine, health and the per-second tick of one process or shard),
``monitor`` (once a second: gauges, progress, ``abort_on_fail``), ``workers`` (``WorkerPool``:
the processes), ``messages`` (their typed messages), ``pool_state`` (the parent's pure reducer:
exact merge, dead-worker detection, the stop), ``result`` (the ``RunResult``, the plan checks),
``merge`` (shard reports merged exactly), ``capacity`` (``--check-capacity``), ``run``
(``run_load``). The plan itself (what should run when) is pure: ``runner.scenario.plan``.
"""

from __future__ import annotations

from runner.load.monitor import Progress
from runner.load.result import load_summary_line
from runner.load.run import run_load
from runner.load.settings import LoadOverrides, apply_overrides, is_load_run, parse_threshold

__all__ = [
    "LoadOverrides",
    "Progress",
    "apply_overrides",
    "is_load_run",
    "load_summary_line",
    "parse_threshold",
    "run_load",
]
