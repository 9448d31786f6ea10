"""``repeat``: run a block of steps ``times`` times; the inner steps are recorded themselves.

With ``index: NAME`` the variable NAME holds the round number (0-based) for the block's steps,
and is known only inside the block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from runner.checks.expect import Failure
from runner.scenario.model import MAX_REPEAT, StepBase
from runner.steps.base import Kind, StepNode, StepOutcome, StepParse, User
from runner.steps.schema import step_name


@dataclass(frozen=True, slots=True)
class RepeatStep(StepBase):
    """Run ``steps`` ``times`` times (the block's own name is for reports of its location)."""

    kind: ClassVar[str] = "repeat"

    times: int = 1
    steps: tuple[StepBase, ...] = ()
    index: str | None = None  # variable set to the round number (0-based) while the block runs

    def inner(self) -> tuple[StepBase, ...]:
        return self.steps


def parse(node: StepNode, ctx: StepParse) -> RepeatStep:
    body, path = node.body, node.body_path
    times = int(body["times"])  # the schema's integer takes 2.0 as well (JSON Schema: a number)
    if times > MAX_REPEAT:
        ctx.problem((*path, "times"), f"{times} repetitions is more than {MAX_REPEAT}; use load.iterations")
    elif times * ctx.nesting > MAX_REPEAT:  # nested blocks multiply
        ctx.problem(
            (*path, "times"),
            f"nested repeats multiply to {times * ctx.nesting} repetitions, more than {MAX_REPEAT}; "
            "use load.iterations",
        )
    index = body.get("index")
    if index is not None and ctx.is_variable(index):
        ctx.problem(
            (*path, "index"),
            f"'{index}' is already a variable (built-in, declared, captured or an outer block's index); "
            "choose another name",
        )
        index = None
    return RepeatStep(
        name=ctx.name(node, "repeat"),
        location=node.location,
        expect=node.expect,
        times=times,
        steps=ctx.block(body["steps"], (*path, "steps"), times=times, index=index),
        index=body.get("index"),
    )


async def execute(step: RepeatStep, vu: User) -> StepOutcome:
    failed_in = await vu.run_steps(step.steps, step.times, step.index)
    if failed_in is not None:
        return StepOutcome(0, failure=Failure(f"repeat stopped in round {failed_in}"), record=False)
    return StepOutcome(0, record=False)


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Run the nested steps several times.",
    "properties": {
        "repeat": {
            "type": "object",
            "description": "The block to repeat.",
            "properties": {
                "times": {"type": "integer", "minimum": 1, "description": "How many times."},
                "steps": {"$ref": "#/$defs/steps", "description": "The steps to repeat."},
                "index": {
                    "type": "string",
                    "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                    "description": "A variable holding the round number (0, 1, ... times-1) for the block's "
                    "steps, e.g. a sequence number to write and match: `index: seq` then `{{ seq }}`.",
                },
            },
            "additionalProperties": False,
            "required": ["times", "steps"],
        },
        "name": step_name(),
    },
    "additionalProperties": False,
}

KIND = Kind(
    name="repeat",
    step=RepeatStep,
    schema=_SCHEMA,
    parse=parse,
    execute=execute,
    operation=False,
    summary="`repeat: {times: 10, index: seq, steps: [...]}` (`index` optional: a variable holding "
    "the round, 0..times-1, inside the block) |",
)
