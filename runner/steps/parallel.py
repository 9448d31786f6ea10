"""``parallel``: branches of steps run at the same time; the step ends when every branch has ended
(a user who asks two services at once and waits for both)::

    - parallel:
        - steps:
            - write: {connection: prices, json: {get: "EURUSD"}}
            - read: prices
        - steps:
            - write: {connection: news, json: {topic: fx}}
            - read: news

Each branch runs on its own view of the user (the same connections and variables, its own step
in flight, its own sequence of drawn think times). The first branch to fail fails the step: the
others are abandoned at once, their step in flight and the steps left counted as skipped, as
after any failure. The end of the run cuts every branch, their steps in flight counted as pending.

What the loader refuses, so that branches cannot corrupt each other's measurement: a connection
read in two branches (two reads at once would take each other's messages), and a connection
opened or closed in one branch and used in another (whether it is open would depend on timing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from runner.checks.expect import Failure
from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User
from runner.steps.schema import step_name


@dataclass(frozen=True, slots=True)
class ParallelStep(StepBase):
    """Run ``branches`` at the same time; passes when every branch passed."""

    kind: ClassVar[str] = "parallel"

    branches: tuple[tuple[StepBase, ...], ...] = ()

    def inner(self) -> tuple[StepBase, ...]:
        return tuple(step for branch in self.branches for step in branch)

    def blocks(self) -> tuple[tuple[StepBase, ...], ...]:
        return self.branches


def _walk(steps: tuple[StepBase, ...]) -> list[StepBase]:
    out: list[StepBase] = []
    for step in steps:
        out.append(step)
        out += _walk(step.inner())
    return out


def parse(node: StepNode, ctx: StepParse) -> ParallelStep:
    path = node.body_path
    branches = tuple(
        ctx.block(branch["steps"], (*path, j, "steps"), times=1, index=None)
        for j, branch in enumerate(node.body)
    )
    _check_branches(branches, path, ctx)
    return ParallelStep(
        name=ctx.name(node, "parallel"), location=node.location, expect=node.expect, branches=branches
    )


def _check_branches(
    branches: tuple[tuple[StepBase, ...], ...], path: tuple[Any, ...], ctx: StepParse
) -> None:
    """A connection read in two branches, or opened or closed in one and used in another."""
    from runner.steps import kind_of  # (the registry imports this module)

    readers: dict[str, tuple[int, int]] = {}  # connection -> (branch, line) of its first read
    owners: dict[str, tuple[int, int, str]] = {}  # connection -> (branch, line, kind) opening/closing it
    users: dict[str, dict[int, int]] = {}  # connection -> branch -> a line using it
    for j, steps in enumerate(branches, 1):
        for step in _walk(steps):
            conn = getattr(step, "connection", "")
            if not conn:
                continue
            users.setdefault(conn, {}).setdefault(j, step.location.line)
            if kind_of(step).reads:
                first = readers.setdefault(conn, (j, step.location.line))
                if first[0] != j:
                    ctx.problem(
                        path,
                        f"connection '{conn}' is read in branch {first[0]} (line {first[1]}) and in branch "
                        f"{j} (line {step.location.line}): two reads at once would take each other's "
                        "messages; read it in one branch only",
                    )
            if step.kind in ("open", "close"):
                owners.setdefault(conn, (j, step.location.line, step.kind))
    for conn, (j, line, kind) in owners.items():
        others = {b: at for b, at in users[conn].items() if b != j}
        if others:
            b, at = min(others.items())
            ctx.problem(
                path,
                f"connection '{conn}' is {'opened' if kind == 'open' else 'closed'} in branch {j} (line "
                f"{line}) and used in branch {b} (line {at}): whether it is open there would depend on "
                "timing; open and close it outside the parallel step, or use it in that branch only",
            )


async def execute(step: ParallelStep, vu: User) -> StepOutcome:
    failed = await vu.run_branches(step.branches)
    if failed is not None:
        return StepOutcome(0, failure=Failure(f"parallel: branch {failed} failed"), record=False)
    return StepOutcome(0, record=False)


KIND = Kind(
    name="parallel",
    step=ParallelStep,
    schema={
        "type": "object",
        "description": "Run branches of steps at the same time; ends when every branch has ended.",
        "properties": {
            "parallel": {
                "type": "array",
                "description": "The branches (two or more), each a list of steps.",
                "minItems": 2,
                "items": {
                    "type": "object",
                    "properties": {"steps": {"$ref": "#/$defs/steps", "description": "The branch's steps."}},
                    "required": ["steps"],
                    "additionalProperties": False,
                },
            },
            "name": step_name(),
        },
        "additionalProperties": False,
    },
    parse=parse,
    execute=execute,
    operation=False,
    summary="`parallel: [{steps: [...]}, {steps: [...]}]`: the branches run at the same time; the first "
    "to fail fails it and the others stop |",
)
