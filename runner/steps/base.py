"""The one interface every step kind implements, and the outcome it returns.

A step module has ``async def execute(step, vu) -> StepOutcome | int``. It moves messages and
time through the virtual user's client and hands what came back to the pure checks of
``runner.checks.expect``; ``finish`` applies the checks every kind shares (rc, error, latency).
The virtual user records the outcome; step modules never touch recorders.

An ``int`` is the per-message shortcut: the step passed with its kind's default success and has
nothing to record but this latency in ns (no rc, error, timing or skipped messages). It is what
``StepOutcome(rc, latency)`` would say, without building one twice per round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from runner.checks.expect import Failure, check_error, check_latency, check_rc, is_default_success
from runner.scenario.model import Step, StepKind

if TYPE_CHECKING:
    from runner.client.codes import ConnectTiming
    from runner.engine.vu import VirtualUser

__all__ = ["StepModule", "StepOutcome", "finish", "not_open"]


@dataclass(slots=True)
class StepOutcome:
    """What one execution of a step produced. ``failure`` is None when every expectation held.

    ``error`` is the client's last-error text (or our own) when the rc was not a success;
    ``record`` is False for blocks (``repeat``) whose inner steps are recorded themselves.
    """

    rc: int
    latency_ns: int | None = None
    failure: Failure | None = None
    error: str | None = None
    skipped_messages: int = 0
    timing: ConnectTiming | None = None
    record: bool = True
    rc_ok: bool = True  # rc is the kind's default success (not counted in the report's rc)
    #: A read that returned 1: the peer's close code (None: no close frame) and reason.
    closed: tuple[int | None, str] | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


class StepModule(Protocol):
    async def execute(self, step: Step, vu: VirtualUser) -> StepOutcome | int: ...


def finish(
    step: Step,
    kind: StepKind,
    rc: int,
    latency_ns: int | None,
    error: str | None = None,
    keyword: str | None = None,
    *,
    content_failure: Failure | None = None,
    skipped_messages: int = 0,
    timing: ConnectTiming | None = None,
) -> StepOutcome:
    """Apply the shared checks: rc (expected or default), ``expect.error``, ``expect.latency``."""
    expect = step.expect
    if (
        error is None
        and content_failure is None
        and expect.outcome_default
        and (rc >= 0 if (kind is StepKind.OPEN or kind is StepKind.WRITE) else rc == 0)
    ):
        # The success path of a step without expectations (every message of a load run): the
        # checks below would all pass; what they would build is built here directly.
        return StepOutcome(rc, latency_ns, None, None, skipped_messages, timing, True, True)
    failure = check_rc(kind, expect, rc)
    if failure is not None and error:
        failure = Failure(f"{failure.message}: {error}", failure.expected, error)
    if failure is None:
        failure = check_error(expect, error, keyword)
    if failure is None:
        failure = content_failure
    if failure is None:
        failure = check_latency(expect, latency_ns)
    rc_ok = is_default_success(kind, rc)
    return StepOutcome(
        rc=rc,
        latency_ns=latency_ns,
        failure=failure,
        error=None if rc_ok else error,
        skipped_messages=skipped_messages,
        timing=timing,
        rc_ok=rc_ok,
    )


def not_open(step: Step, kind: StepKind, connection: str) -> StepOutcome:
    """The outcome of using a connection that is not open (never opened, or closed)."""
    return finish(step, kind, -1, None, f"connection {connection!r} is not open")
