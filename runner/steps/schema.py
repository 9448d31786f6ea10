"""The scenario JSON Schema, assembled from the kinds: the base (``runner/schemas/
scenario.base.json``: everything but the steps) and each kind's fragment (``Kind.schema``).

The shipped ``runner/schemas/scenario.schema.json`` (what editors and ``wsload schema`` use, and
what validation reads) is this assembly, written by ``python -m runner.steps``; a test
keeps the two the same. The helpers below write the shapes several kinds share, so each kind's
module holds only what is its own.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from runner.scenario.units import DURATION_PATTERN
from runner.steps.base import Kind

__all__ = ["assemble", "connection_step", "duration", "main", "step_name"]

_CONNECTION_NAME_USE = "The connection to use; may be left out when only one is declared."


def duration(description: str) -> dict[str, Any]:
    """A duration value (``250ms``, ``5s``, or a number of seconds), described."""
    return {
        "description": description,
        "type": ["string", "number"],
        "pattern": DURATION_PATTERN,
        "minimum": 0,
        "errorMessage": "a duration such as 250ms, 5s, 1m or a number of seconds",
    }


def step_name() -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "description": "Step name, unique in the scenario; default '<kind> <connection>' (e.g. 'read main').",
    }


def connection_step(
    kind: str,
    description: str,
    body: str,
    timeout: str,
    *,
    expect: str = "expect",
    body_extra: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The shape of a step on one connection: ``KIND: NAME`` or ``KIND: {connection, timeout,
    ...body_extra}``, with ``name``, ``timeout`` (for the short form), ``expect`` and ``extra``."""
    return {
        "type": "object",
        "description": description,
        "properties": {
            kind: {
                "description": body,
                "oneOf": [
                    {"$ref": "#/$defs/connectionName", "description": "Short form: the connection's name."},
                    {
                        "type": "object",
                        "description": body,
                        "properties": {
                            "connection": {
                                "$ref": "#/$defs/connectionName",
                                "description": _CONNECTION_NAME_USE,
                            },
                            "timeout": duration(timeout),
                            **(body_extra or {}),
                        },
                        "additionalProperties": False,
                    },
                ],
            },
            "name": step_name(),
            "timeout": duration(
                f"Time-out of this {kind} (same as {kind}.timeout, for the short form '{kind}: NAME')."
            ),
            "expect": {"$ref": f"#/$defs/{expect}", "description": "What the step's outcome must be."},
            **(extra or {}),
        },
        "additionalProperties": False,
    }


def base() -> dict[str, Any]:
    text = resources.files("runner.schemas").joinpath("scenario.base.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def assemble(kinds: Iterable[Kind]) -> dict[str, Any]:
    """The whole scenario schema: the base with each kind's step and the step choice."""
    document = base()
    kinds = list(kinds)
    defs = document["$defs"]
    names = [k.name for k in kinds]
    step: dict[str, Any] = {
        "description": "One step: a mapping with exactly one of "
        + ", ".join(names)
        + ", plus optional name and expect (and capture for read).",
        "type": "object",
        "oneOf": [{"required": [k.name]} for k in kinds],
        "allOf": [{"if": {"required": [k.name]}, "then": {"$ref": f"#/$defs/{k.name}Step"}} for k in kinds],
    }
    ordered: dict[str, Any] = {}
    for key, value in defs.items():  # the kinds' steps where the base marks their place
        if key == "steps":
            for k in kinds:
                ordered[f"{k.name}Step"] = dict(k.schema)
            ordered["step"] = step
        ordered[key] = value
    document["$defs"] = ordered
    return document


def text(kinds: Iterable[Kind]) -> str:
    return json.dumps(assemble(kinds), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the assembled schema over the shipped file (``--check``: only compare)."""
    from runner.steps import KINDS  # (the registry imports the kinds, which import this module)

    args = sys.argv[1:] if argv is None else argv
    target = Path(__file__).resolve().parent.parent / "schemas" / "scenario.schema.json"
    wanted = text(KINDS.values())
    if "--check" in args:
        same = target.read_text(encoding="utf-8") == wanted
        print(f"{target}: {'up to date' if same else 'differs from the kinds: run python -m runner.steps'}")
        return 0 if same else 1
    target.write_text(wanted, encoding="utf-8")
    print(f"wrote {target}")
    return 0
