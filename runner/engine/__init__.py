"""The engine: virtual users running steps, one module per step kind, a run once as a check.

How a run is put together (``check.run_check`` does exactly this for one user, one iteration;
the load engine does it for many users, looping)::

    recorder = RunRecorder(time.monotonic_ns())            # runner.results.recorders; one per process
    async with resolved_target(target or scenario.target) as t:   # engine.embedded
        ctx = RunContext(scenario, recorder, t.url, t.ca_pem)      # engine.vu; shared by users
        client = WebSocketClient()                                 # one per process or per user
        vu = VirtualUser(ctx, client, vu_id, source_address=...)   # engine.vu
        while more:
            ok = await vu.run_iteration()   # steps in order; closes its connections at the end
    result = build_result(recorder, ...)                    # runner.results.result (frozen)
    result = result.with_thresholds(evaluate(scenario.thresholds, result))  # runner.checks.thresholds

Workers: ``recorder.serialize()`` in each process, ``RunRecorder.from_serialized`` + ``merge``
in the parent; the totals and histograms are exactly those of one process.
``check.on_stop_signals(callback)`` installs SIGINT/SIGTERM handlers on the running loop.

Modules: ``vu`` (RunContext, VirtualUser), ``steps`` (``EXECUTE``: step class -> its module's
``async def execute(step, vu) -> StepOutcome | int``), ``check`` (run once, overall bound,
interrupts), ``embedded`` (``target: embedded`` / ``embedded-tls``).
"""

from __future__ import annotations

__all__: list[str] = []
