"""The step kinds: one module each (``runner.steps.<kind>``, defining ``KIND``), found here.

``KINDS`` (YAML key -> ``Kind``) is what the loader parses with, what the scenario schema is
assembled from (``runner.steps.schema``) and what the engine runs (``EXECUTE``: step class ->
``execute``, the per-step dispatch: a class hashes in C). A module of this package that defines
``KIND`` is a kind; nothing else needs to know of it (``runner/steps/base.py`` says what a kind is).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from runner.scenario.model import StepBase
from runner.steps.base import Kind, StepOutcome, User

__all__ = ["EXECUTE", "KINDS", "kind_of"]

#: The order kinds are listed in (schema, docs); a kind not named here comes after, by name.
_ORDER = ("open", "write", "read", "receive", "close", "ping", "sleep", "repeat")
_NOT_KINDS = frozenset({"base", "schema", "__main__"})


def _discover() -> dict[str, Kind]:
    found: dict[str, Kind] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_KINDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")  # (a plugin layout: found by name)
        kind = getattr(module, "KIND", None)
        if isinstance(kind, Kind):
            found[kind.name] = kind
    ranked = sorted(found, key=lambda name: (_ORDER.index(name) if name in _ORDER else len(_ORDER), name))
    return {name: found[name] for name in ranked}


KINDS: Mapping[str, Kind] = MappingProxyType(_discover())
_BY_CLASS: dict[type[StepBase], Kind] = {kind.step: kind for kind in KINDS.values()}

#: Step class -> its kind's ``execute``.
EXECUTE: dict[type[StepBase], Callable[[Any, User], Awaitable[StepOutcome | int | None]]] = {
    kind.step: kind.execute for kind in KINDS.values()
}


def kind_of(step: StepBase) -> Kind:
    """The kind of a step (its class's)."""
    return _BY_CLASS[type(step)]
