"""The engine: virtual users running a scenario's steps, and a run once as a check.

How a run is put together (``check.run_check`` does exactly this for one user, one iteration;
the load engine, ``runner.load``, does it for many users, looping)::

    recorder = RunRecorder(time.monotonic_ns())            # runner.results.recorders; one per process
    async with resolved_target(target or scenario.target) as t:   # engine.embedded
        ctx = RunContext(scenario, recorder, t.url, t.ca_pem)      # engine.vu; shared by users
        client = WebSocketClient()                                 # one per process or per user
        vu = VirtualUser(ctx, client, vu_id, source_address=...)   # engine.vu
        while more:
            ok = await vu.run_iteration()   # steps in order; closes its connections at the end
    result = build_result(recorder, ...)                    # runner.results.result (frozen)
    result = result.with_thresholds(evaluate(scenario.thresholds, result))  # runner.checks.thresholds

A step runs through its kind's ``execute`` (``runner.steps.EXECUTE``), which sees the user only
through ``runner.steps.base.User``; the user records what it returns.

Modules: ``vu`` (RunContext, VirtualUser), ``check`` (run once, overall bound, interrupts),
``embedded`` (``target: embedded`` / ``embedded-tls``).
"""

from __future__ import annotations

__all__: list[str] = []
