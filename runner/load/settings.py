"""Command-line overrides of the ``load:`` section and ``--threshold`` expressions.

The scenario model is frozen; overrides produce a new ``Scenario`` (``dataclasses.replace``) so the
engine only ever reads one ``LoadSpec``. ``--threshold`` goes through the loader's own threshold
parser, so a threshold means the same on the command line as in the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from runner.checks import thresholds
from runner.errors import InvalidThreshold, UsageError
from runner.scenario.model import LoadSpec, Location, Scenario, Step, Threshold

__all__ = ["LoadOverrides", "apply_overrides", "is_load_run", "parse_threshold"]


@dataclass(frozen=True, slots=True)
class LoadOverrides:
    """What ``--vus --duration --rate --iterations --max-vus --threshold --source-address`` say;
    ``None``/empty means "as the file says". ``workers`` is handled by the runner, not the spec."""

    vus: int | None = None
    duration_s: float | None = None
    rate: float | None = None
    iterations: int | None = None
    max_vus: int | None = None
    thresholds: tuple[str, ...] = ()
    source_addresses: tuple[str, ...] = ()

    @property
    def shape_given(self) -> bool:
        """Whether anything on the command line asks for a load run by itself."""
        return any(
            v is not None for v in (self.vus, self.duration_s, self.rate, self.iterations, self.max_vus)
        )


def is_load_run(scenario: Scenario, overrides: LoadOverrides, workers: int | None = None) -> bool:
    """A load run when the file has ``load:`` or the command line shapes one (``--check`` aside)."""
    return scenario.load is not None or overrides.shape_given or workers is not None


def _all_steps(steps: Sequence[Step]) -> Iterator[Step]:
    for step in steps:
        yield step
        yield from _all_steps(step.inner())


def parse_threshold(expression: str, scenario: Scenario) -> Threshold:
    """One ``--threshold`` expression, checked against ``scenario``'s step names and kinds by the
    same parser as a file's (the same names and messages); ``UsageError`` when it is wrong."""
    steps = [(s.name, s) for s in _all_steps(scenario.steps)]
    # A plan's: every population's steps, named as its run names them (POPULATION/STEP).
    steps += [(f"{p.name}/{s.name}", s) for p in scenario.populations for s in _all_steps(p.steps)]
    try:
        return thresholds.parse_threshold(
            expression,
            step_names={name for name, _ in steps},
            kinds={s.kind for _, s in steps},
            location=Location("--threshold", 0, 0),
        )
    except InvalidThreshold as exc:
        raise UsageError(f"--threshold: {exc}") from None


def apply_overrides(scenario: Scenario, overrides: LoadOverrides) -> Scenario:
    """The scenario with the command line's load shape and extra thresholds.

    ``--rate`` makes the model open (``--vus`` then caps the pool like ``--max-vus``); ``--vus``
    alone makes it closed. ``--duration`` replaces stages. Without any bound a closed run does
    one iteration per virtual user; an open run needs ``--duration`` or ``--iterations``.
    """
    o = overrides
    if scenario.populations:
        if o.shape_given:
            raise UsageError(
                "--vus, --rate, --duration, --iterations and --max-vus shape one scenario's load; "
                f"{scenario.file} is a plan whose populations each have their own: change them there"
            )
        plan_load = scenario.load or LoadSpec()
        if o.source_addresses:
            plan_load = replace(plan_load, source_addresses=o.source_addresses)
        extra = tuple(parse_threshold(t, scenario) for t in o.thresholds)
        return replace(scenario, load=plan_load, thresholds=scenario.thresholds + extra)
    load = scenario.load or LoadSpec()
    if o.rate is not None:
        load = replace(load, model="open", rate=o.rate, stages=() if load.model == "closed" else load.stages)
        if o.vus is not None:
            load = replace(load, max_vus=o.vus)
    elif o.vus is not None:  # a flat closed shape: --vus replaces stages and a rate
        load = replace(load, model="closed", rate=None, vus=o.vus, stages=())
    if o.duration_s is not None:
        load = replace(load, duration_s=o.duration_s, stages=())
    if o.iterations is not None:
        load = replace(load, iterations=o.iterations)
    if o.max_vus is not None:
        load = replace(load, max_vus=o.max_vus)
    if o.source_addresses:
        load = replace(load, source_addresses=o.source_addresses)
    if load.ramp_up_s and load.duration_s is not None and load.ramp_up_s > load.duration_s:
        load = replace(load, ramp_up_s=load.duration_s)
    if load.duration_s is None and load.iterations is None and not load.stages:
        if load.model == "open":
            raise UsageError(
                "an open-model run (--rate) needs --duration or --iterations to know when to stop"
            )
        load = replace(load, iterations=1)
    thresholds = scenario.thresholds + tuple(parse_threshold(t, scenario) for t in o.thresholds)
    return replace(scenario, load=load, thresholds=thresholds)
