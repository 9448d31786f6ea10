"""``sleep``: wait (think time), fixed or drawn from a distribution; its latency is the time
actually slept.

``sleep: 2s`` waits 2 s. A mapping draws each wait, per user and reproducibly (the run's seed,
``runner.scenario.draws``):

- ``{min: 1s, max: 3s}``: uniform between the two (Locust's ``between``, JMeter's Uniform
  Random Timer, Gatling's ``pause(min, max)``);
- ``{mean: 2s, distribution: exponential}``: the waits of a Poisson process (users acting
  independently at an average rate), optionally capped by ``max``;
- ``{mean: 2s, stddev: 500ms, distribution: normal}``: JMeter's Gaussian Random Timer, clamped
  to ``[min, max]`` (``min`` defaults to 0: a wait is never negative).

``distribution`` may be left out where the keys say it (``min`` and ``max`` alone: uniform;
``stddev``: normal; ``mean`` alone: exponential).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, cast

from runner.scenario.draws import unit_draw
from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepNode, StepParse, User
from runner.steps.schema import duration, step_name

Distribution = Literal["fixed", "uniform", "exponential", "normal"]
DISTRIBUTIONS: tuple[Distribution, ...] = ("uniform", "exponential", "normal")


@dataclass(frozen=True, slots=True)
class SleepStep(StepBase):
    kind: ClassVar[str] = "sleep"

    duration_s: float = 0.0  # the wait (fixed), or the mean (exponential, normal)
    distribution: Distribution = "fixed"
    min_s: float = 0.0
    max_s: float = math.inf
    stddev_s: float = 0.0

    def wait_s(self, u: float) -> float:
        """The wait for a uniform draw ``u`` in [0, 1)."""
        d = self.distribution
        if d == "fixed":
            return self.duration_s
        if d == "uniform":
            return self.min_s + u * (self.max_s - self.min_s)
        if d == "exponential":
            return min(-self.duration_s * math.log1p(-u), self.max_s)
        # normal: the inverse of its distribution function at u (u == 0 maps to the lowest value)
        z = _NORMAL.inv_cdf(u) if u > 0.0 else -8.0
        return min(max(self.duration_s + z * self.stddev_s, self.min_s), self.max_s)


class _Normal:
    """The standard normal's inverse distribution function, made once (``statistics`` is slow
    to import and ``NormalDist()`` per draw would cost a second object)."""

    def __init__(self) -> None:
        self._dist: Any = None

    def inv_cdf(self, u: float) -> float:
        if self._dist is None:
            from statistics import NormalDist

            self._dist = NormalDist()
        return float(self._dist.inv_cdf(u))


_NORMAL = _Normal()


def parse(node: StepNode, ctx: StepParse) -> SleepStep:
    body, path = node.body, node.body_path
    step = SleepStep(name=ctx.name(node, "sleep"), location=node.location, expect=node.expect)
    if not isinstance(body, dict):
        return replace(step, duration_s=ctx.duration(body, path))
    given = {k: ctx.duration(body[k], (*path, k)) for k in ("min", "max", "mean", "stddev") if k in body}
    distribution = _distribution(body.get("distribution"), given)
    example = _EXAMPLES[distribution]
    missing = [k for k in _NEEDS[distribution] if k not in given]
    if missing:
        ctx.problem(path, f"a {distribution} sleep needs {' and '.join(missing)} (e.g. {example})")
        return step
    for k in given:
        if k not in _ALLOWED[distribution]:
            ctx.problem(
                (*path, k), f"'{k}' has no meaning for a {distribution} sleep (e.g. {example})", key=True
            )
    low, high = given.get("min", 0.0), given.get("max", math.inf)
    if low > high:
        ctx.problem((*path, "max"), f"max ({high:g}s) is less than min ({low:g}s)")
    if distribution != "uniform" and given["mean"] <= 0:
        ctx.problem((*path, "mean"), f"a {distribution} sleep needs a mean above 0")
    return replace(
        step,
        duration_s=given.get("mean", 0.0),
        distribution=distribution,
        min_s=low,
        max_s=high,
        stddev_s=given.get("stddev", 0.0),
    )


def _distribution(stated: object, given: Mapping[str, float]) -> Distribution:
    """The distribution named, or the one the keys say (stddev: normal; mean: exponential)."""
    if stated in DISTRIBUTIONS:
        return cast(Distribution, stated)
    if "stddev" in given:
        return "normal"
    return "exponential" if "mean" in given else "uniform"


_EXAMPLES: dict[Distribution, str] = {
    "uniform": "{min: 1s, max: 3s}",
    "exponential": "{mean: 2s, distribution: exponential}",
    "normal": "{mean: 2s, stddev: 500ms, distribution: normal}",
}
_NEEDS: dict[Distribution, tuple[str, ...]] = {
    "uniform": ("min", "max"),
    "exponential": ("mean",),
    "normal": ("mean", "stddev"),
}
_ALLOWED: dict[Distribution, tuple[str, ...]] = {
    "uniform": ("min", "max"),
    "exponential": ("mean", "max"),
    "normal": ("mean", "stddev", "min", "max"),
}


def draws_waits(steps: Iterable[StepBase]) -> bool:
    """Whether any of ``steps`` (blocks included) draws its wait: then the run's seed matters."""
    return any(
        (isinstance(s, SleepStep) and s.distribution != "fixed") or draws_waits(s.inner()) for s in steps
    )


def execute(step: SleepStep, vu: User) -> Awaitable[None]:
    """Not a coroutine: the step is the wait's future itself, whose None says it passed, the
    latency being the time since it began (``runner.steps.base``); a user sleeping through a
    long hold keeps no frame for it. (A sleep takes no ``expect``: the loader refuses one.)"""
    vu.step_started_ns = time.monotonic_ns()
    wait = step.duration_s
    if step.distribution != "fixed":
        wait = step.wait_s(unit_draw(vu.ctx.seed, vu.id, vu.draws))
        vu.draws += 1
    return vu.sleep(wait)


_DRAWN = {
    "type": "object",
    "description": "A wait drawn per user and execution (reproducible with --seed): "
    + "; ".join(f"{d}: {e}" for d, e in _EXAMPLES.items()),
    "properties": {
        "min": duration("Shortest wait (uniform; normal: clamped to it, default 0)."),
        "max": duration("Longest wait (uniform; exponential and normal: capped at it)."),
        "mean": duration("Average wait (exponential, normal)."),
        "stddev": duration("Standard deviation (normal)."),
        "distribution": {
            "enum": list(DISTRIBUTIONS),
            "description": "uniform (min..max), exponential (a Poisson process), normal (mean, stddev). "
            "Optional where the keys say it.",
        },
    },
    "additionalProperties": False,
}

KIND = Kind(
    name="sleep",
    step=SleepStep,
    schema={
        "type": "object",
        "description": "Wait (think time): fixed, or drawn from a distribution.",
        "properties": {
            "sleep": {
                "description": "How long to wait: 250ms, 1s, ...; or a distribution to draw it from.",
                "oneOf": [duration("How long to wait: 250ms, 1s, ..."), _DRAWN],
            },
            "name": step_name(),
        },
        "additionalProperties": False,
    },
    parse=parse,
    execute=execute,
    operation=False,
    summary="`sleep: 250ms`, `sleep: {min: 1s, max: 3s}`, `{mean: 2s, distribution: exponential}` | 0",
)
