"""The scenario JSON Schema, and its errors turned into messages a user can act on.

jsonschema reports *what* failed in schema terms ("is not valid under any of the given schemas");
this module reports it in scenario terms: ``unknown key 'raed', did you mean 'read'?``, ``expected a
duration such as 250ms``. Every error is kept (``iter_errors``), each becomes a ``Problem`` at the
line and column the ``SourceMap`` recorded for its path.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib import resources
from itertools import islice
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from runner.errors import Problem
from runner.scenario.source import Path, SourceMap

__all__ = [
    "MAX_SCHEMA_ERRORS",
    "MAX_STEPS",
    "closest",
    "nested_steps",
    "scenario_schema",
    "schema_problems",
    "schema_text",
    "step_kinds",
    "template_names",
    "unused_variables",
]

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def schema_text() -> str:
    """The scenario schema as shipped inside the package (works from a wheel, not only a checkout)."""
    return resources.files("runner.schemas").joinpath("scenario.schema.json").read_text(encoding="utf-8")


@cache
def scenario_schema() -> Mapping[str, Any]:
    """The parsed scenario schema, read once."""
    return json.loads(schema_text())  # type: ignore[no-any-return]


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(scenario_schema())


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option a misspelling most likely meant, or None."""
    ordered = sorted(options)
    found = difflib.get_close_matches(word, ordered, n=1, cutoff=0.6)
    if found:
        return found[0]
    # A fragment of a long name ('Expired' for 'CertificateExpired') is a likely meaning too.
    low = word.lower()
    fragments = [o for o in ordered if len(low) >= 4 and low in o.lower()]
    return fragments[0] if len(fragments) == 1 else None


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    guess = closest(word, options)
    return f", did you mean '{guess}'?" if guess else ""


def _yaml_kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    text = str(value)
    return f"the text {text[:40]!r}" + ("..." if len(text) > 40 else "")


def _expected(schema: Mapping[str, Any]) -> str:
    """Words for what a (sub)schema accepts: its errorMessage, or its types."""
    if "errorMessage" in schema:
        return str(schema["errorMessage"])
    if "$ref" in schema:
        ref = _resolve(schema["$ref"])
        return _expected(ref)
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if types:
        return " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    if "oneOf" in schema:
        return " or ".join(_expected(s) for s in schema["oneOf"])
    return "a valid value"


def _resolve(ref: str) -> Mapping[str, Any]:
    node: Any = scenario_schema()
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


def _required_choice(schema: Any) -> list[str] | None:
    """The keys of a ``oneOf: [{required: [a]}, {required: [b]}]`` choice, else None."""
    if not isinstance(schema, list) or not schema:
        return None
    keys = []
    for sub in schema:
        if not (isinstance(sub, dict) and set(sub) == {"required"} and len(sub["required"]) == 1):
            return None
        keys.append(sub["required"][0])
    return keys


class _Formatter:
    """Turns jsonschema errors into ``Problem``s, deduplicated and in scenario terms."""

    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.problems: dict[tuple[Path, str], Problem] = {}
        self.choice_paths: set[Path] = set()
        self.more: Path | None = None  # where the first problem not listed is

    def add(self, path: Path, message: str, *, key: bool = False) -> None:
        if (path, message) in self.problems:
            return
        if len(self.problems) >= MAX_SCHEMA_ERRORS:  # one error can list 100,000 unknown keys
            self.more = self.more or path
            return
        self.problems[(path, message)] = self.source.problem(path, message, key=key)

    def error(self, err: ValidationError, base: Path = ()) -> None:
        path: Path = (*base, *err.relative_path) if base else tuple(err.absolute_path)
        v, inst = err.validator, err.instance
        schema: Any = err.schema
        value: Any = err.validator_value
        if v == "additionalProperties" and isinstance(inst, dict):
            known = list(schema.get("properties", {}))
            for extra in inst:
                if extra in known:
                    continue
                if path in self.choice_paths and extra in step_kinds():
                    continue
                if len(self.problems) >= MAX_SCHEMA_ERRORS:
                    self.more = self.more or (*path, extra)
                    break
                hint = _did_you_mean(extra, known)
                kinds = [k for k in known if k in step_kinds()]
                if not hint and len(kinds) == 1:
                    article = "an" if kinds[0][:1] in "aeiou" else "a"
                    hint = f" ({article} {kinds[0]} step takes: {', '.join(known)})"
                self.add((*path, extra), f"unknown key '{extra}'{hint}", key=True)
        elif v == "oneOf":
            self._one_of(err, path)
        elif v == "required":
            missing = [k for k in value if isinstance(inst, dict) and k not in inst]
            for k in missing:
                self.add(path, f"missing required key '{k}'")
        elif v == "type":
            self.add(path, f"expected {_expected(schema)}, got {_yaml_kind(inst)}")
        elif v == "pattern":
            if "errorMessage" in schema:
                self.add(path, f"{_yaml_kind(inst)} is not {schema['errorMessage']}")
            else:
                self.add(path, f"{inst!r} is not allowed here (must match {value})")
        elif v == "propertyNames":
            self.add(path, f"'{inst}' is not a valid name here (letters, digits and _ ; no spaces)")
        elif v == "enum":
            options = [str(o) for o in value]
            hint = _did_you_mean(str(inst), options)
            if not hint and len(options) <= 6:
                hint = " (one of: " + ", ".join(options) + ")"
            self.add(path, f"unknown value {inst!r}{hint}")
        elif v == "minItems" and isinstance(value, int) and value > 1 and isinstance(inst, list):
            self.add(path, f"needs at least {value} items, has {len(inst)}")
        elif v in ("minItems", "minProperties", "minLength"):
            self.add(
                path, "must not be empty" if path != ("steps",) else "a scenario needs at least one step"
            )
        elif v == "minimum":
            self.add(path, f"must be at least {value}, got {inst!r}")
        elif v == "uniqueItems":
            self.add(path, "has the same item twice")
        else:
            self.add(path, err.message)

    def _one_of(self, err: ValidationError, path: Path) -> None:
        inst = err.instance
        keys = _required_choice(cast(Any, err.validator_value))
        if keys is not None and isinstance(inst, dict):
            present = [k for k in keys if k in inst]
            what = "a step" if set(keys) == set(step_kinds()) else "this"
            if not present:
                for extra in inst:
                    guess = closest(extra, keys)
                    if guess and extra not in _COMMON_KEYS:
                        noun = "step kind" if what == "a step" else "key"
                        self.add(
                            (*path, extra), f"unknown {noun} '{extra}', did you mean '{guess}'?", key=True
                        )
                        return
                self.add(path, f"{what} needs one of: {', '.join(keys)}")
            else:
                self.choice_paths.add(path)
                listed = " and ".join(f"'{k}'" for k in present)
                self.add(path, f"{listed} cannot be combined; {what} takes exactly one of: {', '.join(keys)}")
            return
        # A choice of shapes: report the errors of the alternative whose type fits, if one does.
        by_alt: dict[int, list[ValidationError]] = {}
        for sub in err.context or ():
            by_alt.setdefault(int(sub.schema_path[0]), []).append(sub)
        fitting = [
            errs
            for errs in by_alt.values()
            if not any(e.validator == "type" and not e.relative_path for e in errs)
        ]
        alts: Any = err.validator_value
        if len(fitting) == 1:
            for sub in fitting[0]:
                self.error(sub, path)
            return
        if len(by_alt) < len(alts):
            self.add(path, err.message)  # valid under several: should not happen with our schema
            return
        expected = " or ".join(_expected(a) for a in alts)
        self.add(path, f"expected {expected}, got {_yaml_kind(inst)}")


@cache
def step_kinds() -> tuple[str, ...]:
    """The step kinds the schema knows (its step choice: one of these keys), in its order."""
    return tuple(alt["required"][0] for alt in scenario_schema()["$defs"]["step"]["oneOf"])


_COMMON_KEYS = ("name", "expect", "capture")


#: Schema problems listed per file. jsonschema builds each error with the errors of every
#: alternative inside it: a file of 90,000 misspelt steps took 24 s and 2 GB to list them all.
#: A file with more is told so; the first ones are what to fix first anyway.
MAX_SCHEMA_ERRORS = 200
#: More steps than this (counting those inside repeat blocks) is refused before the schema is
#: checked: checking takes about 0.2 ms a step, and a scenario needs tens (use ``repeat``).
MAX_STEPS = 10_000


def nested_steps(step: object) -> list[tuple[Path, list[Any]]]:
    """The blocks a step's YAML holds, each with its path below the step: a kind whose body has a
    ``steps`` list (``repeat``, ``every``: ``(kind, "steps")``) or is a list of mappings that
    have one (``parallel``'s branches: ``(kind, j, "steps")``)."""
    if not isinstance(step, dict):
        return []
    found: list[tuple[Path, list[Any]]] = []
    for kind in step_kinds():
        body = step.get(kind)
        if isinstance(body, dict) and isinstance(body.get("steps"), list):
            found.append(((kind, "steps"), body["steps"]))
        elif isinstance(body, list):
            found += [
                ((kind, j, "steps"), branch["steps"])
                for j, branch in enumerate(body)
                if isinstance(branch, dict) and isinstance(branch.get("steps"), list)
            ]
    return found


def _walk_steps(data: object) -> Iterator[tuple[object, Path]]:
    """Every step ``data`` declares, nested blocks included, with its path."""
    todo: list[tuple[object, Path]] = [(data.get("steps"), ("steps",))] if isinstance(data, dict) else []
    while todo:
        steps, path = todo.pop()
        if not isinstance(steps, list):
            continue
        for i, step in enumerate(steps):
            yield step, (*path, i)
            for below, inner in nested_steps(step):
                todo.append((inner, (*path, i, *below)))


def _count_steps(data: object, limit: int) -> tuple[int, Path]:
    """How many steps ``data`` declares, counting stops past ``limit``; and the path of the last."""
    count = 0
    last: Path = ("steps",)
    for _, path in _walk_steps(data):
        count += 1
        last = path
        if count > limit:
            break
    return count, last


@cache
def _body_keys(kind: str) -> frozenset[str]:
    """The keys a step kind's mapping form takes (``write: {connection, text, ...}``)."""
    body = scenario_schema()["$defs"].get(f"{kind}Step", {}).get("properties", {}).get(kind, {})
    shapes = [body, *body.get("oneOf", ()), *body.get("anyOf", ())]
    return frozenset(k for shape in shapes for k in shape.get("properties", {}))


def _unindented(data: object) -> dict[Path, tuple[str, list[str]]]:
    """Steps whose kind has nothing under it while keys of its own stand beside it: the body was
    not indented (``- write:`` then ``connection: main`` at the same column). Step path -> (the
    kind, those keys)."""
    found: dict[Path, tuple[str, list[str]]] = {}
    kinds = step_kinds()
    for step, path in _walk_steps(data):
        if not isinstance(step, dict):
            continue
        empty = [k for k in kinds if k in step and step[k] is None]
        if len(empty) == 1:
            beside = [k for k in step if k not in kinds and k not in (*_COMMON_KEYS, "timeout")]
            if beside and all(k in _body_keys(empty[0]) for k in beside):
                found[path] = (empty[0], beside)
    return found


def schema_problems(data: object, source: SourceMap) -> list[Problem]:
    """Every schema violation of ``data`` as a ``Problem`` with position and excerpt (at most
    ``MAX_SCHEMA_ERRORS``, then one problem saying there are more). A step whose body was not
    indented gets one problem saying so instead of the four its shape breaks."""
    steps, last = _count_steps(data, MAX_STEPS)
    if steps > MAX_STEPS:
        message = f"more than {MAX_STEPS:,} steps; use 'repeat' for steps that run many times"
        return [source.problem(last, message)]
    found = list(islice(_validator().iter_errors(data), MAX_SCHEMA_ERRORS + 1))
    unindented = _unindented(data)
    errors = sorted(
        (
            e
            for e in found[:MAX_SCHEMA_ERRORS]
            if not any(tuple(e.absolute_path)[: len(p)] == p for p in unindented)
        ),
        key=lambda e: (len(e.absolute_path), e.validator != "oneOf"),
    )
    fmt = _Formatter(source)
    for path, (kind, beside) in unindented.items():
        keys = " and ".join(f"'{k}'" for k in beside)
        fmt.add(
            (*path, kind),
            f"nothing is under '{kind}:' and {keys} {'stand' if len(beside) > 1 else 'stands'} beside "
            f"it: indent {'them' if len(beside) > 1 else 'it'} under '{kind}:' (two more spaces)",
            key=True,
        )
    for err in errors:
        fmt.error(err)
    problems = list(fmt.problems.values())
    more = tuple(found[MAX_SCHEMA_ERRORS].absolute_path) if len(found) > MAX_SCHEMA_ERRORS else fmt.more
    if more is not None:
        message = f"more than {MAX_SCHEMA_ERRORS} problems; the rest are not listed (fix these first)"
        problems.append(source.problem(more, message))
    return problems


def template_names(value: object) -> set[str]:
    """Every variable name the templates inside ``value`` (a ``Scenario`` or any part of one) use."""
    import dataclasses

    from runner.scenario.templates import JsonTemplate, Template

    names: set[str] = set()
    todo: list[object] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, Template | JsonTemplate):
            names |= item.names
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            todo.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, Mapping):
            todo.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            todo.extend(item)
    return names


def unused_variables(names: Iterable[str], scenarios: Iterable[object]) -> list[str]:
    """A warning for each ``--var`` name that no template of ``scenarios`` uses (a misspelling is
    otherwise silent: the file's default is used), with the name it most likely meant."""
    scenarios = list(scenarios)
    used: set[str] = set()
    for scenario in scenarios:
        used |= template_names(scenario)
    where = getattr(scenarios[0], "file", "the scenario") if len(scenarios) == 1 else "no scenario"
    warnings = []
    for name in names:
        if name in used:
            continue
        hint = closest(name, used)
        extra = f"; did you mean '{hint}'?" if hint else ""
        verb = "uses" if len(scenarios) == 1 else "given uses"
        warnings.append(f"--var {name}: {where} {verb} no variable '{name}'{extra}")
    return warnings
