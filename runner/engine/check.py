"""Run a scenario once, as a check: one virtual user, one iteration, an overall time bound.

``run_check`` is what ``wsload run`` calls per file. SIGINT/SIGTERM cancel the running step; what
was measured until then is kept and the result is marked interrupted (exit 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from runner.checks.thresholds import evaluate
from runner.engine.embedded import resolved_target
from runner.engine.vu import RunContext, VirtualUser
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult, RunSettings, TlsInfo, build_result
from runner.runtime import on_stop_signals, utc_now_iso
from runner.scenario.model import ALL_SSL_ERRORS, Scenario
from runner.steps.sleep import draws_waits

__all__ = ["run_check", "tls_info"]


def tls_info(scenario: Scenario, ctx: RunContext | None = None) -> TlsInfo:
    """How certificates were treated: ``verified`` is False when the scenario relaxes
    verification (``ignoreSslErrors``) or an open ignored an error; ``ignored_errors`` are the
    errors actually met and ignored; ``allowed`` what the scenario allows to ignore."""
    allowed: set[str] = set()
    if ctx is not None and ctx.tls_opens == 0:  # no wss connection was made: nothing was relaxed
        return TlsInfo()
    for spec in scenario.connections.values():
        if spec.ignore_ssl_errors is ALL_SSL_ERRORS:
            allowed.add("all")
        elif spec.ignore_ssl_errors:
            allowed.update(spec.ignore_ssl_errors)
    ignored = ctx.tls_ignored if ctx is not None else set()
    unverified = ctx.tls_unverified if ctx is not None else False
    return TlsInfo(
        verified=not allowed and not ignored and not unverified,
        ignored_errors=tuple(sorted(ignored)),
        allowed=tuple(sorted(allowed)),
    )


async def run_check(
    scenario: Scenario,
    *,
    target: str | None = None,
    client_factory: Callable[[], Any] | None = None,
    handle_signals: bool = True,
) -> RunResult:
    """Run ``scenario`` once and return its result, thresholds evaluated.

    ``target`` overrides the scenario's target (``embedded`` starts the embedded server).
    """
    started_at = utc_now_iso()
    t0 = time.monotonic_ns()
    recorder = RunRecorder(t0)
    interrupted = False
    error = ""
    async with resolved_target(target or scenario.target) as resolved:
        if client_factory is None:
            from runner.client import WebSocketClient

            client = WebSocketClient()
        else:
            client = client_factory()
        ctx = RunContext(scenario, recorder, resolved.url, resolved.ca_pem)
        vu = VirtualUser(ctx, client, 1)
        task = asyncio.ensure_future(vu.run_iteration())

        def stop(_signum: int) -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        guard = on_stop_signals(stop) if handle_signals else contextlib.nullcontext()
        with guard:
            try:
                done, _ = await asyncio.wait({task}, timeout=scenario.run_timeout_s)
                if not done:
                    error = f"run time-out: the scenario did not finish within {scenario.run_timeout_s:g}s"
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except asyncio.CancelledError:
                # We were cancelled from outside (e.g. KeyboardInterrupt on asyncio.run).
                interrupted = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception as exc:  # a bug outside any step must still leave a report
                error = f"internal error: {type(exc).__name__}: {exc}"
            finally:
                await vu.close_all()
                with contextlib.suppress(Exception):
                    await client.aclose()
        step = vu.current_step
        if interrupted and step is not None:
            error = f"interrupted during step {step.name!r} (line {step.location.line})"
        elif error.startswith("run time-out") and step is not None:
            error += f" (step {step.name!r} at line {step.location.line} was still waiting)"
        duration_s = (time.monotonic_ns() - t0) / 1e9
        error = ctx.secrets.mask(error)  # an internal error may quote a header it could not send
        result = build_result(
            recorder,
            scenario_name=scenario.name,
            scenario_file=scenario.file,
            started_at=started_at,
            duration_s=duration_s,
            target=resolved.label,
            interrupted=interrupted,
            error=error,
            tls=tls_info(scenario, ctx),
            settings=RunSettings(
                mode="check",
                read_timeout_s=scenario.read_timeout_s,
                run_timeout_s=scenario.run_timeout_s,
                seed=scenario.seed if draws_waits(scenario.steps) else None,
            ),
        )
    return result.with_thresholds(evaluate(scenario.thresholds, result))
