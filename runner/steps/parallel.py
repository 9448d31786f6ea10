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
in flight, asking writes and sequence of drawn think times). The first branch to fail fails the
step: the others are abandoned at once, their step in flight and the steps left counted as
skipped at every level (a ``repeat``'s round, a nested branch or background), as after any
failure. The end of the run cuts every branch, their steps in flight counted as pending.

What the loader refuses (``runner.steps.sharing``), so that timing cannot decide a result: a
connection read in two branches (two reads at once would take each other's messages), a
connection opened or closed in one branch and used in another, and a variable set in one branch
(a capture, a ``repeat`` index) and set or used in another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from runner.checks.expect import Failure
from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User
from runner.steps.schema import step_name
from runner.steps.sharing import conflicts


@dataclass(frozen=True, slots=True)
class ParallelStep(StepBase):
    """Run ``branches`` at the same time; passes when every branch passed."""

    kind: ClassVar[str] = "parallel"

    branches: tuple[tuple[StepBase, ...], ...] = ()

    def inner(self) -> tuple[StepBase, ...]:
        return tuple(step for branch in self.branches for step in branch)

    def blocks(self) -> tuple[tuple[StepBase, ...], ...]:
        return self.branches


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
    """What two branches may not share (``runner.steps.sharing``)."""
    for i, first in enumerate(branches, 1):
        for j, second in enumerate(branches[i:], i + 1):
            for message in conflicts(first, second, f"branch {i}", f"branch {j}"):
                ctx.problem(path, message)


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
