"""A step's ``expect`` and a read's ``capture``: what the checks of ``runner.checks.expect`` will
evaluate, refused at load when it could not be (a regex that does not compile or would take
gigabytes to, an invalid JSON Schema, a ``that`` entry JMESPath cannot evaluate, a capture group
the regex does not have)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from runner.loader.document import Document
from runner.loader.expressions import (
    MAX_REGEX_SIZE,
    MAX_REGEX_TOTAL,
    regex_size,
    that_expression,
    that_problem,
)
from runner.runtime import lazy_module
from runner.scenario import model as m
from runner.scenario.source import Path

if TYPE_CHECKING:
    import jmespath
    import regex
else:  # loaded at first use (``runner.runtime.lazy_module``)
    jmespath = lazy_module("jmespath")
    regex = lazy_module("regex")

__all__ = ["captures", "content", "expectation"]


def expectation(doc: Document, raw: dict[str, Any], path: Path, *, read: bool) -> m.Expectation:
    """A step's ``expect``: rc, error and latency for every kind, content checks for a ``read``."""
    latency = None
    if "latency" in raw:
        text = str(raw["latency"]).strip().lstrip("<=").strip()
        latency = doc.duration(text, (*path, "latency"), bound=True)
    checks = None
    if read:
        rest = {k: v for k, v in raw.items() if k not in ("rc", "error", "latency")}
        checks = content(doc, rest, path) if rest else None
    return m.Expectation(rc=raw.get("rc"), error=raw.get("error"), latency_lt_s=latency, content=checks)


def content(doc: Document, raw: dict[str, Any], path: Path) -> m.ContentCheck:
    """The content checks of a read's ``expect`` (text, contains, regex, json, json_schema, that,
    binary, length, sha256); templates may read the names known at this step."""
    known = doc.known
    pattern = raw.get("regex")
    if pattern is not None:
        compile_regex(doc, pattern, (*path, "regex"))
    schema = None
    if "json_schema" in raw:
        schema = _json_schema(doc, raw["json_schema"], (*path, "json_schema"))
    that_raw = raw.get("that", [])
    that_list = [that_raw] if isinstance(that_raw, str) else that_raw
    that = tuple(
        c for i, expr in enumerate(that_list) if (c := _comparison(doc, expr, (*path, "that", i))) is not None
    )
    return m.ContentCheck(
        text=doc.template_in(raw["text"], (*path, "text"), known) if "text" in raw else None,
        contains=doc.template_in(raw["contains"], (*path, "contains"), known) if "contains" in raw else None,
        regex=pattern,
        json=doc.json_template_in(raw["json"], (*path, "json"), known) if "json" in raw else None,
        json_schema=schema,
        that=that,
        binary=raw.get("binary"),
        length=doc.size(raw["length"], (*path, "length")) if "length" in raw else None,
        sha256=raw["sha256"].lower() if "sha256" in raw else None,
    )


def captures(doc: Document, raw: dict[str, Any], path: Path) -> tuple[m.Capture, ...]:
    """A read's ``capture``: a JMESPath path or a regex group per variable; each variable is
    known to the steps after it, and secret when its name is."""
    out: list[m.Capture] = []
    for var, spec in raw.items():
        cpath = (*path, var)
        secret = var in doc.secret_names
        if isinstance(spec, str):
            if _jmespath(doc, spec, cpath):
                out.append(m.Capture(var, path=spec, secret=secret))
        else:
            rx = compile_regex(doc, spec["regex"], (*cpath, "regex"))
            group = spec.get("group", 1)
            if rx is not None:
                if isinstance(group, int) and group > rx.groups:
                    doc.problem((*cpath, "group"), f"the regex has {rx.groups} group(s), not {group}")
                elif isinstance(group, str) and group not in rx.groupindex:
                    doc.problem((*cpath, "group"), f"the regex has no group named '{group}'")
                index = group if isinstance(group, int) else rx.groupindex.get(group, 1)
                out.append(m.Capture(var, regex=spec["regex"], group=index, secret=secret))
        doc.known.add(var)
    return tuple(out)


def compile_regex(doc: Document, pattern: str, path: Path) -> regex.Pattern[str] | None:
    """Compiled as the checks will compile it (``regex``, ``re``'s syntax; see ``expect``),
    once its size is known to be within ``MAX_REGEX_SIZE`` (and the file's patterns together
    within ``MAX_REGEX_TOTAL``): ``x{100000000}`` took 5.7 GB to compile."""
    size = regex_size(pattern)
    total = doc.regex_total + size
    doc.regex_total = total
    if size > MAX_REGEX_SIZE:
        doc.problem(
            path,
            f"regular expression too large: it repeats to about {size:,} items, more than "
            f"{MAX_REGEX_SIZE:,} (a count in {{m}} or {{m,n}}, multiplied by the counts around it); "
            "use a smaller count, or 'length' to check a message's size",
        )
        return None
    if total > MAX_REGEX_TOTAL:
        doc.problem(
            path,
            f"the file's regular expressions repeat to more than {MAX_REGEX_TOTAL:,} items together",
        )
        return None
    try:
        return regex.compile(pattern)
    except (regex.error, RecursionError, OverflowError) as exc:
        doc.problem(path, f"invalid regular expression: {exc}")
        return None


def _json_schema(doc: Document, raw: dict[str, Any], path: Path) -> Mapping[str, object] | None:
    """``json_schema``, inline or ``{file: ...}`` (JSON or YAML), checked to be a valid schema."""
    schema: Any = raw
    if set(raw) == {"file"} and isinstance(raw["file"], str):
        text = doc.read_file(raw["file"], (*path, "file"))
        if text is None:
            return None
        try:
            schema = yaml.safe_load(text) if not raw["file"].endswith(".json") else json.loads(text)
        except (ValueError, yaml.YAMLError) as exc:
            doc.problem(
                (*path, "file"), f"'{raw['file']}' is not valid JSON/YAML: {str(exc).splitlines()[0]}"
            )
            return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        doc.problem(path, f"not a valid JSON Schema: {exc.message}")
        return None
    except Exception as exc:  # jsonschema may raise on exotic input (bad $ref, huge numbers)
        doc.problem(path, f"not a valid JSON Schema: {exc}")
        return None
    return m.frozen_map(schema) if isinstance(schema, dict) else None


def _jmespath(doc: Document, expr: str, path: Path) -> bool:
    """Whether a capture's JMESPath path compiles (else a problem)."""
    try:
        jmespath.compile(expr)
    except Exception as exc:  # jmespath raises several unrelated error types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        doc.problem(path, f"invalid JMESPath expression '{expr}': {first}")
        return False
    return True


def _comparison(doc: Document, expr: str, path: Path) -> tuple[str, str] | None:
    """A ``that`` entry as (the text as written, the JMESPath expression evaluated): see
    ``that_expression``. Refused here when it cannot be evaluated, never at run time."""
    problem = that_problem(expr)
    if problem is not None:
        doc.problem(path, problem)
        return None
    return (expr, that_expression(expr))
