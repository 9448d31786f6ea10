"""``${NAME}`` in a scenario's strings, replaced by the environment's value before the schema
sees the document (``$${NAME}`` stays literal). Every value put in is a secret: it is often a
token, and the errors and the report must not show it."""

from __future__ import annotations

import re
from collections.abc import Mapping

from runner.errors import Problem
from runner.scenario.source import Path, SourceMap

__all__ = ["substitute_env"]

_ENV_RE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_env(
    value: object,
    path: Path,
    env: Mapping[str, str],
    secrets: set[str],
    problems: list[Problem],
    source: SourceMap,
) -> object:
    """``value`` with ``${NAME}`` replaced in every string; an unset name is a problem at its
    place, and each value used is added to ``secrets``."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(1):
                return match.group(0)[1:]
            name = match.group(2)
            if name not in env:
                problems.append(source.problem(path, f"environment variable '{name}' is not set"))
                return ""
            if env[name]:
                secrets.add(env[name])
            return env[name]

        return _ENV_RE.sub(replace, value)
    if isinstance(value, list):
        return [substitute_env(v, (*path, i), env, secrets, problems, source) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: substitute_env(v, (*path, k), env, secrets, problems, source) for k, v in value.items()}
    return value
