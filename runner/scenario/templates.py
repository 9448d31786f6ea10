"""``{{ name }}`` and ``{{ func(args) }}`` templates, compiled once at load, rendered per message.

Our own small interpolator rather than Jinja: it keeps types (``"{{ iteration }}"`` renders the int
itself, so a JSON payload gets a number), it has no code-execution surface (only names, dotted
item access, literals and a fixed table of functions), and a render costs well under a microsecond:
a static template returns a constant, others join a precompiled parts list.

Syntax inside ``{{ }}``: a name (``payload``), dotted access into a captured value
(``session.id``, ``items.0``), a literal (``'{{'``, ``42``), or a call of a built-in function with
literal arguments (``random_int(1, 6)``). There is no escape sequence: ``{{ '{{' }}`` writes ``{{``.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
import uuid
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

from runner.errors import BadValue

__all__ = ["BUILTIN_FUNCTIONS", "JsonTemplate", "Template", "TemplateError", "to_text"]


class TemplateError(BadValue):
    """A template does not compile (load time: the loader makes it a ``Problem``) or a name is
    missing when rendering (run time: the engine makes it a failure of the step)."""


Render = Callable[[Mapping[str, object]], object]

_ALPHABET = string.ascii_letters + string.digits


def _random_int(a: int, b: int) -> int:
    return random.randint(a, b)


def _random_string(n: int = 8) -> str:
    return "".join(random.choices(_ALPHABET, k=n))


#: name -> (function, minimum and maximum number of arguments)
BUILTIN_FUNCTIONS: Mapping[str, tuple[Callable[..., object], int, int]] = {
    "uuid": (lambda: str(uuid.uuid4()), 0, 0),
    "random_int": (_random_int, 2, 2),
    "random_string": (_random_string, 0, 1),
    "now_ms": (lambda: time.time_ns() // 1_000_000, 0, 0),
    "now_us": (lambda: time.time_ns() // 1_000, 0, 0),  # a send stamp finer than a millisecond
    "timestamp": (lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), 0, 0),
}

_OPEN, _CLOSE = "{{", "}}"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\Z")
_CALL_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\Z", re.S)
_ARG_RE = re.compile(r"""\s*(-?[0-9]+(?:\.[0-9]+)?|'[^']*'|"[^"]*")\s*(?:,|\Z)""")
_LITERAL_RE = re.compile(r"""-?[0-9]+(?:\.[0-9]+)?\Z|'[^']*'\Z|"[^"]*"\Z""")


def to_text(value: object) -> str:
    """How a value appears inside a text: JSON spelling for booleans, null and containers."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def _literal(text: str) -> object:
    if text[0] in "'\"":
        return text[1:-1]
    try:
        return float(text) if "." in text else int(text)
    except ValueError:  # more digits than Python converts (4300)
        raise TemplateError(f"the number {text[:20]}... has too many digits") from None


def _lookup(name: str) -> tuple[str, Render]:
    """A renderer for ``name`` or ``name.key.0``; the root name is what must be known."""
    root, *rest = name.split(".")
    if not rest:

        def get(ctx: Mapping[str, object]) -> object:
            try:
                return ctx[root]
            except KeyError:
                raise TemplateError(f"unknown variable '{root}'") from None

        return root, get

    def get_path(ctx: Mapping[str, object]) -> object:
        try:
            value: Any = ctx[root]
        except KeyError:
            raise TemplateError(f"unknown variable '{root}'") from None
        for part in rest:
            try:
                value = value[int(part)] if isinstance(value, list) else value[part]
            except (KeyError, IndexError, TypeError, ValueError):
                raise TemplateError(f"'{name}': {part!r} not found in the value of '{root}'") from None
        return value

    return root, get_path


def _compile_expression(expr: str) -> tuple[str | None, Render | None, object]:
    """(variable root or None, renderer or None, constant) for the text between ``{{ }}``."""
    expr = expr.strip()
    if not expr:
        raise TemplateError("empty '{{ }}'")
    if _LITERAL_RE.match(expr):
        return None, None, _literal(expr)
    call = _CALL_RE.match(expr)
    if call:
        fname, raw_args = call.group(1), call.group(2)
        if fname not in BUILTIN_FUNCTIONS:
            known = ", ".join(sorted(BUILTIN_FUNCTIONS))
            raise TemplateError(f"unknown function '{fname}()' (known: {known})")
        func, lo, hi = BUILTIN_FUNCTIONS[fname]
        args: list[object] = []
        pos = 0
        raw_args = raw_args.strip()
        while pos < len(raw_args):
            m = _ARG_RE.match(raw_args, pos)
            if m is None:
                raise TemplateError(f"'{expr}': arguments must be numbers or quoted strings")
            args.append(_literal(m.group(1)))
            pos = m.end()
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise TemplateError(f"'{fname}()' takes {want} argument(s), got {len(args)}")
        if fname == "random_int" and not all(isinstance(a, int) for a in args):
            raise TemplateError("'random_int()' takes two whole numbers")
        if fname == "random_int" and args[0] > args[1]:  # type: ignore[operator]
            raise TemplateError("'random_int(a, b)' needs a <= b")
        if fname == "random_string" and args and not (isinstance(args[0], int) and 0 <= args[0] <= 1 << 20):
            raise TemplateError("'random_string(n)' takes a whole number between 0 and 1048576")
        frozen = tuple(args)
        return None, (lambda _ctx: func(*frozen)), None
    if _NAME_RE.match(expr):
        root, get = _lookup(expr)
        return root, get, None
    raise TemplateError(f"'{{{{ {expr} }}}}' is not a name, a literal or a function call such as uuid()")


class Template:
    """A string with ``{{ }}`` expressions, compiled once.

    ``names``: the variable names it reads (the loader checks each is known). ``is_static``: it
    renders to its own text with no work. ``render`` gives text; ``render_value`` keeps the type
    when the whole string is one expression.
    """

    __slots__ = ("_parts", "_roots", "_single", "_static", "is_static", "names", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        parts: list[str | Render] = []
        names: set[str] = set()
        roots: dict[Render, str | None] = {}  # each expression's variable (None: a function call)
        pos = 0
        while True:
            start = source.find(_OPEN, pos)
            if start < 0:
                if pos < len(source):
                    parts.append(source[pos:])
                break
            if start > pos:
                parts.append(source[pos:start])
            end = self._find_close(source, start + 2)
            if end < 0:
                raise TemplateError(f"'{{{{' at offset {start} has no closing '}}}}'")
            root, render, constant = _compile_expression(source[start + 2 : end])
            if root is not None:
                names.add(root)
            if render is not None:
                roots[render] = root
            parts.append(render if render is not None else to_text(constant))
            if render is None and parts[-1] == "" and len(parts) > 1:
                parts.pop()
            pos = end + 2
        # Adjacent constant pieces are merged so a render joins as few parts as possible.
        merged: list[str | Render] = []
        for part in parts:
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] = merged[-1] + part
            else:
                merged.append(part)
        self._parts: tuple[str | Render, ...] = tuple(merged)
        self._roots: tuple[str | None, ...] = tuple(roots[p] for p in merged if not isinstance(p, str))
        self.names: frozenset[str] = frozenset(names)
        self.is_static = all(isinstance(p, str) for p in merged)
        self._static = "".join(p for p in merged if isinstance(p, str)) if self.is_static else ""
        self._single: Render | None = merged[0] if len(merged) == 1 and callable(merged[0]) else None

    @staticmethod
    def _find_close(source: str, pos: int) -> int:
        """The ``}}`` that ends an expression, skipping ones inside quoted literals."""
        quote = ""
        for i in range(pos, len(source) - 1):
            ch = source[i]
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "}" and source[i + 1] == "}":
                return i
        return -1

    def render(self, ctx: Mapping[str, object]) -> str:
        """The text with every expression replaced; ``TemplateError`` if a name is missing."""
        if self.is_static:
            return self._static
        if self._single is not None:
            return to_text(self._single(ctx))
        return "".join(p if isinstance(p, str) else to_text(p(ctx)) for p in self._parts)

    def render_parts(self, ctx: Mapping[str, object]) -> tuple[str, tuple[tuple[str | None, str], ...]]:
        """The text, and each expression's variable (None for a function call) with the text it
        gave: what a secret header value was made of, each evaluated once (``uuid()`` differs
        per call), so the engine can register the pieces too (``runner.scenario.secrets``)."""
        if self.is_static:
            return self._static, ()
        values: list[tuple[str | None, str]] = []
        out: list[str] = []
        roots = iter(self._roots)
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = to_text(part(ctx))
                values.append((next(roots), text))
                out.append(text)
        return "".join(out), tuple(values)

    def render_value(self, ctx: Mapping[str, object]) -> object:
        """Like ``render``, but a string that is exactly one expression keeps the value's type."""
        if self._single is not None:
            return self._single(ctx)
        return self.render(ctx)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(("Template", self.source))


#: One encoder for every dynamic leaf: ``json.dumps`` with options builds a new one per call.
_LEAF_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_encode_leaf_default = _LEAF_ENCODER.encode
_encode_str = json.encoder.encode_basestring_ascii  # what the encoder uses for a str
_int_repr = int.__repr__  # what the encoder uses for an int (not a bool)


def _encode_leaf(value: object) -> str:
    """Compact JSON of one rendered value, exactly as ``json.dumps(..., default=str)`` spells it
    inside a larger document; the two commonest types skip the encoder's set-up."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)  # type: ignore[arg-type]
    if kind is int:
        return _int_repr(value)  # type: ignore[arg-type]
    return _encode_leaf_default(value)


_PLAIN_NAME_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\Z")


class _Leaf:
    """A marker standing for one dynamic leaf while the static skeleton is serialised."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _skeleton(value: object, renders: list[Render]) -> object:
    """``value`` with each templated string replaced by a ``_Leaf`` (its renderer appended to
    ``renders``); None when a leaf is not a plain string of a dict value or list item."""
    if isinstance(value, str):
        if _OPEN not in value:
            return value
        t = Template(value)
        if t.is_static:
            return t.render({})
        name = _PLAIN_NAME_RE.match(value)
        # A bare ``{{ name }}`` is a dict look-up (a missing name raises KeyError, which
        # ``dumps`` turns into the general path's TemplateError).
        renders.append(itemgetter(name.group(1)) if name else t.render_value)
        return _Leaf(len(renders) - 1)
    if isinstance(value, list):
        return [_skeleton(v, renders) for v in value]
    if isinstance(value, dict):
        return {k: _skeleton(v, renders) for k, v in value.items()}
    return value


def _splice_plan(value: object) -> tuple[tuple[str, ...], tuple[Render, ...]] | None:
    """Static JSON text pieces and the renderers whose encoded values go between them, so a
    render is ``pieces[0] + enc(r0) + pieces[1] + ...``; None when the skeleton cannot be cut
    cleanly (a marker text occurring in the data itself), and the tree path is used instead."""
    renders: list[Render] = []
    skeleton = _skeleton(value, renders)
    markers = [f"\x00wsload-leaf-{i}\x00" for i in range(len(renders))]

    def marker(obj: object) -> object:
        if isinstance(obj, _Leaf):
            return markers[obj.index]
        raise TypeError(type(obj).__name__)

    try:
        text = json.dumps(skeleton, separators=(",", ":"), default=marker)
    except (TypeError, ValueError):
        return None
    pieces: list[str] = []
    pos = 0
    for m in markers:
        spelled = json.dumps(m)
        at = text.find(spelled, pos)
        if at < 0 or text.count(spelled) != 1:
            return None
        pieces.append(text[pos:at])
        pos = at + len(spelled)
    pieces.append(text[pos:])
    return tuple(pieces), tuple(renders)


class JsonTemplate:
    """A JSON value (dicts, lists, scalars) whose strings may hold templates.

    Static values are kept and serialised once; ``render`` of a dynamic one builds a fresh tree
    through precompiled closures, so no walk over static parts happens per message. ``dumps``
    does not build the tree: the static skeleton is serialised once at load, cut at the
    dynamic leaves, and each message splices the JSON of the leaves' values between the pieces
    (a few string joins instead of a dict build and a full ``json.dumps``).
    """

    __slots__ = ("_dumped", "_pieces", "_render", "_renders", "is_static", "names", "value")

    def __init__(self, value: object) -> None:
        self.value = value
        names: set[str] = set()
        self._render = self._compile(value, names)
        self.names: frozenset[str] = frozenset(names)
        self.is_static = self._render is None
        self._dumped = json.dumps(value, separators=(",", ":")) if self.is_static else ""
        self._pieces: tuple[str, ...] = ()
        self._renders: tuple[Render, ...] = ()
        if not self.is_static:
            plan = _splice_plan(value)
            if plan is not None:
                self._pieces, self._renders = plan

    @classmethod
    def _compile(cls, value: object, names: set[str]) -> Render | None:
        """A renderer for ``value``, or None when it has no template anywhere."""
        if isinstance(value, str):
            if _OPEN not in value:
                return None
            t = Template(value)
            if t.is_static:
                constant = t.render({})
                return lambda _ctx: constant
            names.update(t.names)
            return t.render_value
        if isinstance(value, list):
            items = [cls._compile(v, names) for v in value]
            if all(r is None for r in items):
                return None
            pairs = [(r, v) for r, v in zip(items, value, strict=True)]
            return lambda ctx: [v if r is None else r(ctx) for r, v in pairs]
        if isinstance(value, dict):
            entries = [(k, cls._compile(v, names), v) for k, v in value.items()]
            if all(r is None for _, r, _ in entries):
                return None
            return lambda ctx: {k: v if r is None else r(ctx) for k, r, v in entries}
        return None

    def render(self, ctx: Mapping[str, object]) -> object:
        """The value with every template rendered (the stored value itself when static)."""
        return self.value if self._render is None else self._render(ctx)

    def flat_fields(self) -> tuple[tuple[str, str | None, object], ...] | None:
        """For a flat object whose values are str/int constants (not bool) or a bare
        ``{{ name }}``: ``(key, name or None, constant)`` per key, the form a per-message
        ``match`` compares cheaply; None for any other shape."""
        value = self.value
        if type(value) is not dict or not value:
            return None
        out: list[tuple[str, str | None, object]] = []
        for key, item in value.items():
            kind = type(item)
            if kind is str and _OPEN in item:
                bare = _PLAIN_NAME_RE.match(item)
                if bare is None:
                    return None
                out.append((key, bare.group(1), None))
            elif kind is str or kind is int:
                out.append((key, None, item))
            else:
                return None
        return tuple(out)

    def dumps(self, ctx: Mapping[str, object]) -> str:
        """Compact JSON text of ``render(ctx)``; serialised once at load when static."""
        if self._render is None:
            return self._dumped
        renders = self._renders
        if not renders:
            return json.dumps(self._render(ctx), separators=(",", ":"), default=str)
        pieces = self._pieces
        enc = _encode_leaf
        try:
            # One, two and three leaves (nearly every message a scenario sends) unrolled.
            n = len(renders)
            if n == 1:
                return pieces[0] + enc(renders[0](ctx)) + pieces[1]
            if n == 2:
                r0, r1 = renders
                return "".join((pieces[0], enc(r0(ctx)), pieces[1], enc(r1(ctx)), pieces[2]))
            if n == 3:
                r0, r1, r2 = renders
                p0, p1, p2, p3 = pieces
                return "".join((p0, enc(r0(ctx)), p1, enc(r1(ctx)), p2, enc(r2(ctx)), p3))
            out = [pieces[0]]
            for piece, render in zip(pieces[1:], renders, strict=True):
                out.append(enc(render(ctx)))
                out.append(piece)
        except KeyError:  # a bare name that is not set: the general path says which, as usual
            return json.dumps(self._render(ctx), separators=(",", ":"), default=str)
        return "".join(out)

    def __repr__(self) -> str:
        return f"JsonTemplate({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonTemplate) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("JsonTemplate", json.dumps(self.value, sort_keys=True, default=str)))
