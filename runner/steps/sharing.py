"""What two groups of steps that run at the same time (an ``every`` and the steps after it, the
branches of a ``parallel``) may not share, so that timing cannot decide a result.

- a connection both read (two reads at once take each other's messages; ``Kind.reads``);
- a connection one opens or closes and the other uses (whether it is open would be a race);
- a variable one sets (a capture, a ``repeat`` index) and the other sets or reads (which value
  it holds would be a race).

``conflicts(a, b)`` names each, with a line of each side; the loader reports them at the block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from runner.scenario.model import StepBase

__all__ = ["conflicts", "walk"]


def walk(steps: tuple[StepBase, ...]) -> Iterator[StepBase]:
    """Every step of ``steps``, blocks and the steps inside them, in file order."""
    for step in steps:
        yield step
        yield from walk(step.inner())


def _names(value: object) -> Iterator[str]:
    """The variables the templates inside a step's field read (fields, tuples, dataclasses)."""
    names = getattr(value, "names", None)
    if isinstance(names, frozenset):
        yield from names
    elif isinstance(value, tuple):
        for item in value:
            yield from _names(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type) and not isinstance(value, StepBase):
        for f in dataclasses.fields(value):
            yield from _names(getattr(value, f.name))


def _holds_steps(value: object) -> bool:
    """A field holding nested steps (a block's): their own templates are theirs, walked apart."""
    return isinstance(value, tuple) and any(
        isinstance(x, StepBase) or (isinstance(x, tuple) and any(isinstance(y, StepBase) for y in x))
        for x in value
    )


def _reads_vars(step: StepBase) -> set[str]:
    found: set[str] = set()
    for f in dataclasses.fields(step):
        value = getattr(step, f.name)
        if not _holds_steps(value):
            found.update(_names(value))
    return found


def _sets_vars(step: StepBase) -> set[str]:
    found = {c.variable for c in getattr(step, "captures", ())}
    index = getattr(step, "index", None)
    if isinstance(index, str):
        found.add(index)
    return found


def _profile(steps: tuple[StepBase, ...]) -> dict[str, dict[str, int]]:
    """What ``steps`` do that matters here -> name -> the first line doing it."""
    from runner.steps import kind_of  # (the registry imports the kinds, which import this)

    out: dict[str, dict[str, int]] = {"read": {}, "own": {}, "use": {}, "set": {}, "get": {}}
    for step in walk(steps):
        line = step.location.line
        conn = getattr(step, "connection", "")
        if conn:
            out["use"].setdefault(conn, line)
            if kind_of(step).reads:
                out["read"].setdefault(conn, line)
            if step.kind in ("open", "close"):
                out["own"].setdefault(conn, line)
        for name in _sets_vars(step):
            out["set"].setdefault(name, line)
        for name in _reads_vars(step):
            out["get"].setdefault(name, line)
    return out


def conflicts(
    a: tuple[StepBase, ...], b: tuple[StepBase, ...], what_a: str, what_b: str, *, b_releases: bool = False
) -> list[str]:
    """Why ``a`` and ``b`` cannot run at the same time ([] when they can); ``what_a`` and
    ``what_b`` name them in the messages ("this background", "a step after it", "branch 2").
    ``b_releases``: ``b`` may open or close what ``a`` uses, as ``a`` is stopped first (an
    ``every`` before the steps after it: ``User.release``)."""
    pa, pb = _profile(a), _profile(b)
    out: list[str] = []
    for conn in sorted(pa["read"].keys() & pb["read"].keys()):
        out.append(
            f"connection '{conn}' is read both in {what_a} (line {pa['read'][conn]}) and in {what_b} "
            f"(line {pb['read'][conn]}): two reads at once would take each other's messages; read it in "
            "one of them only"
        )
    sides = (
        ((pa, pb, what_a, what_b),) if b_releases else ((pa, pb, what_a, what_b), (pb, pa, what_b, what_a))
    )
    for p, q, who, other in sides:
        for conn in sorted(p["own"].keys() & q["use"].keys()):
            out.append(
                f"connection '{conn}' is opened or closed in {who} (line {p['own'][conn]}) and used in "
                f"{other} (line {q['use'][conn]}): whether it is open there would depend on timing"
            )
    clashes = {
        n: (pa["set"][n], pb["set"].get(n, pb["get"].get(n)))
        for n in pa["set"].keys() & (pb["set"].keys() | pb["get"].keys())
    }
    for name in pb["set"].keys() & pa["get"].keys() - clashes.keys():
        clashes[name] = (pa["get"][name], pb["set"][name])
    for name in sorted(clashes):
        line_a, line_b = clashes[name]
        out.append(
            f"variable '{name}' is set or used in {what_a} (line {line_a}) and in {what_b} (line {line_b}), "
            "one of them setting it: the value it holds would depend on timing; use another name, or set it "
            "before the two run"
        )
    return out
