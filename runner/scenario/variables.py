"""Variables given from outside a scenario file: ``--var NAME=VALUE`` and ``--secret-var``
(the command line and the pytest plugin parse them the same way)."""

from __future__ import annotations

from collections.abc import Sequence

from runner.errors import UsageError
from runner.scenario.secrets import SecretText

__all__ = ["parse_vars"]


def parse_vars(items: Sequence[str], secret_items: Sequence[str] = ()) -> dict[str, str]:
    """``NAME=VALUE`` pairs from ``--var`` and ``--secret-var`` (values of the latter are
    ``SecretText``, which the loader makes secret variables); ``UsageError`` for anything else.
    An error about a ``--secret-var`` never quotes its value."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"--var {item!r}: expected NAME=VALUE with NAME a variable name")
        values[name] = value
    for item in secret_items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            shown = f"{name[:40]!r}" if sep else "a value without '='"
            raise UsageError(f"--secret-var: expected NAME=VALUE with NAME a variable name, got {shown}")
        if name in values:
            raise UsageError(f"variable '{name}' is given both with --var and with --secret-var")
        values[name] = SecretText(value)
    return values
