"""Pure decisions about what a step produced: content checks, captures, return-code success.

Nothing here does I/O or touches an event loop; the step modules hand in what came off the wire
(a ``Message``), the step's expectation and the variables, and get back ``None`` (all good) or a
structured ``Failure`` with what was expected, what came, and a one-line message.

JSON is parsed lazily, once per message, and only when a check or capture needs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

from runner.errors import RegexTimeout
from runner.runtime import lazy_module
from runner.scenario.model import Capture, ContentCheck, Expectation, SuccessRule

if TYPE_CHECKING:
    import jmespath
    import regex
else:  # loaded at first use (``runner.runtime.lazy_module``)
    jmespath = lazy_module("jmespath")
    regex = lazy_module("regex")

__all__ = [
    "Failure",
    "Message",
    "apply_captures",
    "check_content",
    "check_error",
    "check_latency",
    "check_rc",
    "compiled_jmespath",
    "describe",
    "json_subset_problem",
    "matches",
]

#: How much of a received message a failure shows.
SHOWN_CHARS = 200
_NOT_PARSED = object()


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed expectation: ``message`` is one line for humans; ``expected``/``actual`` are short."""

    message: str
    expected: str = ""
    actual: str = ""

    def __str__(self) -> str:
        return self.message


def describe(value: object, limit: int = SHOWN_CHARS) -> str:
    """A short printable form of a received or expected value."""
    if isinstance(value, bytes):
        text = f"<{len(value)} bytes binary>"
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


#: The C scanner ``json.loads`` ends in, called directly (see ``_loads``).
_SCAN_JSON = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, untyped in typeshed


def _loads(data: str | bytes) -> Any:
    """``json.loads(data)``: a str that is one JSON value with nothing around it goes straight to
    the C scanner, skipping ``loads``'s Python wrappers and whitespace regexes; anything else
    (bytes, surrounding whitespace, invalid JSON) takes ``json.loads`` for its usual errors."""
    if type(data) is str:
        try:
            value, end = _SCAN_JSON(data, 0)
        except StopIteration:
            return json.loads(data)
        if end == len(data):
            return value
    return json.loads(data)


class Message:
    """A received message with its JSON form parsed on first use only."""

    __slots__ = ("_json", "data")

    def __init__(self, data: str | bytes) -> None:
        self.data = data
        self._json: Any = _NOT_PARSED

    @property
    def is_binary(self) -> bool:
        return isinstance(self.data, bytes)

    @property
    def text(self) -> str:
        """The message as text (binary decoded as UTF-8 with replacement)."""
        if isinstance(self.data, bytes):
            return self.data.decode("utf-8", "replace")
        return self.data

    def json(self) -> Any:
        """The parsed JSON value; raises ``ValueError`` when the message is not JSON."""
        if self._json is _NOT_PARSED:
            try:
                self._json = _loads(self.data)
            except (ValueError, UnicodeDecodeError) as exc:
                self._json = ValueError(f"not JSON: {exc}")
        if isinstance(self._json, ValueError):
            raise self._json
        return self._json


# --- return codes -------------------------------------------------------------------------------


def check_rc(kind: str, success: SuccessRule, expect: Expectation, rc: int) -> Failure | None:
    """Whether ``rc`` is what the step wants: ``expect.rc`` or its kind's ``success``.

    Where success is "rc >= 0" (open, write: a socket number or a byte count), a non-negative
    ``expect.rc`` means "succeeded", so ``rc: 0`` reads naturally in YAML. ``expect.error``
    without ``rc`` means the step must fail (any code but its success), with that error
    (``check_error``).
    """
    if expect.rc is None and expect.error is not None:
        if not success.holds(rc):
            return None
        return Failure(
            f"{kind} returned rc {rc} (succeeded), expected it to fail with error {expect.error!r}",
            f"error {expect.error}",
            f"rc {rc}",
        )
    if expect.rc is None:
        if success.holds(rc):
            return None
        wanted = success.value
        return Failure(f"{kind} returned rc {rc}, expected rc {wanted}", f"rc {wanted}", f"rc {rc}")
    if success is SuccessRule.NON_NEGATIVE and expect.rc >= 0:
        if rc >= 0:
            return None
        return Failure(f"{kind} returned rc {rc}, expected rc >= 0", "rc >= 0", f"rc {rc}")
    if rc == expect.rc:
        return None
    return Failure(f"{kind} returned rc {rc}, expected rc {expect.rc}", f"rc {expect.rc}", f"rc {rc}")


def check_error(expect: Expectation, error_text: str | None, keyword: str | None) -> Failure | None:
    """``expect.error``: the last error's keyword equals it, or its text contains it."""
    if expect.error is None:
        return None
    if keyword is not None and keyword == expect.error:
        return None
    if error_text is not None and expect.error.lower() in error_text.lower():
        return None
    actual = error_text if error_text else "no error"
    return Failure(f"expected error {expect.error!r}, got {actual!r}", expect.error, describe(actual))


def check_latency(expect: Expectation, latency_ns: int | None) -> Failure | None:
    """``expect.latency_lt_s``: the step's latency must stay under the bound."""
    if expect.latency_lt_s is None or latency_ns is None:
        return None
    if latency_ns < expect.latency_lt_s * 1e9:
        return None
    wanted = f"< {_ms(expect.latency_lt_s * 1e9)}"
    got = _ms(latency_ns)
    return Failure(f"latency {got}, expected {wanted}", wanted, got)


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.3f}ms"


# --- content --------------------------------------------------------------------------------------


#: A regular expression search on one message may take this long. The patterns are compiled
#: with the ``regex`` module (``re``'s syntax), which avoids much backtracking that ``re`` falls
#: into and stops a search at a time limit: a pattern like ``(a|aa)+$`` on a long message would
#: otherwise hold the event loop, and with it every virtual user of the process, for minutes.
REGEX_TIMEOUT_S = 0.1


@lru_cache(maxsize=256)
def _regex(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


def _search(pattern: str, text: str) -> regex.Match[str] | None:
    try:
        return _regex(pattern).search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        raise RegexTimeout(pattern, len(text), REGEX_TIMEOUT_S) from None


@lru_cache(maxsize=256)
def _jmes(path: str) -> Any:
    return jmespath.compile(path)


def compiled_jmespath(path: str) -> Any:
    """``path`` compiled once (cached), as the checks and captures compile theirs."""
    return _jmes(path)


_VALIDATORS: dict[int, tuple[Mapping[str, object], Draft202012Validator]] = {}


def _validator(schema: Mapping[str, object]) -> Draft202012Validator:
    """One compiled validator per schema object (schemas live as long as the scenario)."""
    hit = _VALIDATORS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = Draft202012Validator(_plain(schema))
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


def _plain(value: Any) -> Any:
    """Read-only mappings from the model as plain dicts/lists (jsonschema wants plain types)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _render(template: Any, ctx: Mapping[str, object]) -> str:
    return str(template.render(ctx))


def json_subset_problem(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where ``expected`` is not a subset of ``actual``; ``None`` when it is.

    Objects: every expected key present with a matching value (extra keys allowed). Arrays: the
    same length, element by element. Scalars: equal (``1 == 1.0``, but ``True != 1``).
    """
    if type(expected) is dict and type(actual) is dict:
        # The common case (a rendered ``match: {json: ...}`` against a parsed message), without
        # the ABC checks: a str or int (never bool) key equal to a value of its own type passes
        # at once; anything else goes through the general comparison below.
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            got = actual[key]
            kind = type(value)
            if (kind is str or kind is int) and type(got) is kind and value == got:
                continue
            problem = json_subset_problem(value, got, f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{path}: expected an object, got {describe(actual, 60)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            problem = json_subset_problem(value, actual[key], f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, list):
            return f"{path}: expected an array, got {describe(actual, 60)}"
        if len(expected) != len(actual):
            return f"{path}: expected {len(expected)} items, got {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            problem = json_subset_problem(e, a, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, bool) or isinstance(actual, bool):
        same = isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    else:
        same = expected == actual
    if same:
        return None
    return f"{path}: expected {describe(expected, 60)}, got {describe(actual, 60)}"


def _truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, "" and empty lists and objects are false; 0 is true."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


def _that_failure(text: str, expression: str, doc: Any) -> Failure | None:
    """``that``: the JMESPath ``expression`` must come out true on ``doc``. A failure shows what the
    left side of a comparison was (``expected result.count > 3, got 2``), else the result."""
    compiled = _jmes(expression)
    try:
        value = compiled.search(doc)
    except jmespath.exceptions.JMESPathError as exc:  # e.g. length() of a number
        return Failure(f"{text}: {exc}", text, describe(doc))
    except TypeError:  # jmespath orders a string against a number with Python's '<'
        value = None
    if _truthy(value):
        return None
    node = compiled.parsed
    if node.get("type") == "comparator" and node["children"][0].get("type") != "literal":
        with contextlib.suppress(jmespath.exceptions.JMESPathError, TypeError):
            value = jmespath.visitor.TreeInterpreter().visit(node["children"][0], doc)
    return Failure(f"expected {text}, got {describe(value, 60)}", text, describe(value))


def check_content(check: ContentCheck, message: Message, ctx: Mapping[str, object]) -> Failure | None:
    """The first way ``message`` fails ``check``, or ``None`` when every set field holds."""
    if check.binary is not None and check.binary != message.is_binary:
        want = "binary" if check.binary else "text"
        got = "binary" if message.is_binary else "text"
        return Failure(f"expected a {want} message, got {got}", want, got)
    if check.length is not None:
        size = len(message.data) if message.is_binary else len(message.text.encode("utf-8"))
        if size != check.length:
            return Failure(
                f"expected {check.length} bytes, got {size}", f"{check.length} bytes", f"{size} bytes"
            )
    if check.sha256 is not None:
        raw = message.data if isinstance(message.data, bytes) else message.data.encode("utf-8")
        digest = hashlib.sha256(raw).hexdigest()
        if digest != check.sha256.lower():
            return Failure(f"sha256 {digest}, expected {check.sha256}", check.sha256, digest)
    if check.text is not None:
        want = _render(check.text, ctx)
        if message.text != want or message.is_binary:
            return Failure(
                f"expected text {describe(want, 80)!r}, got {describe(message.data, 80)!r}",
                describe(want),
                describe(message.data),
            )
    if check.contains is not None:
        want = _render(check.contains, ctx)
        if want not in message.text:
            return Failure(
                f"expected a message containing {describe(want, 80)!r}, got {describe(message.data, 80)!r}",
                f"contains {describe(want)}",
                describe(message.data),
            )
    if check.regex is not None and _search(check.regex, message.text) is None:
        return Failure(
            f"expected a message matching /{check.regex}/, got {describe(message.data, 80)!r}",
            f"/{check.regex}/",
            describe(message.data),
        )
    if check.needs_json:
        try:
            doc = message.json()
        except ValueError:
            return Failure(
                f"expected JSON, got {describe(message.data, 80)!r}", "JSON", describe(message.data)
            )
        if check.json is not None:
            want_json = check.json.render(ctx)
            problem = json_subset_problem(want_json, doc)
            if problem:
                return Failure(f"JSON mismatch at {problem}", describe(want_json), describe(doc))
        if check.json_schema is not None:
            errors = sorted(_validator(check.json_schema).iter_errors(doc), key=lambda e: e.json_path)
            if errors:
                first = errors[0]
                return Failure(
                    f"JSON Schema: {first.json_path}: {first.message}",
                    "valid against the JSON Schema",
                    describe(doc),
                )
        for text, expression in check.that:
            failure = _that_failure(text, expression, doc)
            if failure is not None:
                return failure
    return None


def matches(check: ContentCheck, message: Message, ctx: Mapping[str, object]) -> bool:
    """Whether ``message`` satisfies ``check`` (for ``read`` with ``match``)."""
    fields = check.json_fields
    if fields is not None:
        hit = match_json_fields(fields, message.data, ctx)
        if hit is not None:
            return hit
    return check_content(check, message, ctx) is None


_ABSENT = object()


def match_json_fields(
    fields: tuple[tuple[str, str | None, object], ...], data: str | bytes, ctx: Mapping[str, object]
) -> bool | None:
    """``match: {json: {...}}`` of a flat object (``ContentCheck.json_fields``) decided without
    rendering the expected tree: True or False where this is certain to agree with
    ``check_content`` (a text message holding one JSON object, str/int values of the same type
    on both sides), None for anything else, which the general path then decides."""
    if type(data) is not str:
        return None
    try:
        doc, end = _SCAN_JSON(data, 0)
    except (StopIteration, ValueError):
        return None
    if end != len(data) or type(doc) is not dict:
        return None
    for key, name, constant in fields:
        if name is None:
            want = constant
        else:
            want = ctx.get(name, _ABSENT)
            if want is _ABSENT:
                return None  # the general path reports the unset variable
        got = doc.get(key, _ABSENT)
        if got is _ABSENT:
            return False
        kind = type(want)
        if (kind is not str and kind is not int) or type(got) is not kind:
            return None  # 1 == 1.0, True != 1 and nested values: the general comparison
        if want != got:
            return False
    return True


# --- captures -------------------------------------------------------------------------------------


def apply_captures(
    captures: tuple[Capture, ...], message: Message
) -> tuple[dict[str, object], Failure | None]:
    """Values for each capture's variable, or the first capture that found nothing."""
    values: dict[str, object] = {}
    for cap in captures:
        if cap.path is not None:
            try:
                value = _jmes(cap.path).search(message.json())
            except ValueError:
                return values, Failure(
                    f"capture {cap.variable}: message is not JSON",
                    f"JSON with {cap.path}",
                    describe(message.data),
                )
            if value is None:
                return values, Failure(
                    f"capture {cap.variable}: {cap.path} not found",
                    cap.path,
                    describe(message.data),
                )
            values[cap.variable] = value
        elif cap.regex is not None:
            try:
                found = _search(cap.regex, message.text)
            except RegexTimeout as exc:
                return values, Failure(f"capture {cap.variable}: {exc}", f"/{cap.regex}/", "")
            if found is None:
                return values, Failure(
                    f"capture {cap.variable}: /{cap.regex}/ did not match",
                    f"/{cap.regex}/",
                    describe(message.data),
                )
            try:
                values[cap.variable] = found.group(cap.group)
            except IndexError:
                return values, Failure(
                    f"capture {cap.variable}: no group {cap.group} in /{cap.regex}/", "", ""
                )
        else:
            values[cap.variable] = message.json() if _is_json(message) else message.text
    return values, None


def _is_json(message: Message) -> bool:
    try:
        message.json()
    except ValueError:
        return False
    return True
