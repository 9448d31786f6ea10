"""Pure tests of content checks, captures and return-code decisions (no event loop)."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.checks.expect import (
    Message,
    apply_captures,
    check_content,
    check_error,
    check_latency,
    check_rc,
    json_subset_problem,
    match_json_fields,
    matches,
)
from runner.loader import that_expression
from runner.scenario.model import Capture, ContentCheck, Expectation, SuccessRule
from runner.scenario.templates import JsonTemplate, Template
from runner.steps import KINDS


def _success(kind: str) -> SuccessRule:
    return KINDS[kind].step.success


def test_default_success_per_kind() -> None:
    """Open and write succeed with rc >= 0; read, close and ping only with rc 0."""
    assert _success("open").holds(3)
    assert _success("write").holds(120)
    assert not _success("open").holds(-2)
    assert not _success("read").holds(1)
    assert _success("close").holds(0)
    assert not _success("ping").holds(-2)


def test_expected_rc_overrides_default() -> None:
    """``expect.rc: -1`` makes a failed open the success; ``rc: 0`` on open means succeeded."""
    opened, read = _success("open"), _success("read")
    assert check_rc("open", opened, Expectation(rc=-1), -1) is None
    failure = check_rc("open", opened, Expectation(rc=-1), 4)
    assert failure is not None and failure.expected == "rc -1" and failure.actual == "rc 4"
    assert check_rc("open", opened, Expectation(rc=0), 7) is None
    assert check_rc("read", read, Expectation(rc=1), 1) is None
    assert check_rc("read", read, Expectation(), -2) is not None


def test_expected_error_keyword_or_substring() -> None:
    """``expect.error`` matches the Qt keyword exactly or a substring of the text, ignoring case."""
    exp = Expectation(rc=-1, error="CertificateUntrusted")
    assert check_error(exp, "SSL error: x", "CertificateUntrusted") is None
    assert (
        check_error(Expectation(error="connection REFUSED"), "network error: connection refused", None)
        is None
    )
    failure = check_error(exp, None, None)
    assert failure is not None and "no error" in failure.message


def test_latency_bound() -> None:
    """``latency < 50ms`` passes under the bound and fails at or above it, showing both."""
    exp = Expectation(latency_lt_s=0.05)
    assert check_latency(exp, 49_000_000) is None
    failure = check_latency(exp, 51_000_000)
    assert failure is not None and failure.actual == "51.000ms" and "< 50.000ms" in failure.expected


def test_exact_text_and_contains() -> None:
    """Exact text compares the whole message; contains looks for a substring; templates render."""
    ctx = {"name": "bob"}
    assert check_content(ContentCheck(text=Template("hi {{ name }}")), Message("hi bob"), ctx) is None
    failure = check_content(ContentCheck(text=Template("hello")), Message("hellx"), {})
    assert failure is not None
    assert failure.expected == "hello" and failure.actual == "hellx"
    assert failure.message == "expected text 'hello', got 'hellx'"
    assert matches(ContentCheck(contains=Template("ll")), Message("hello"), {})
    assert not matches(ContentCheck(contains=Template("zz")), Message("hello"), {})


def test_regex() -> None:
    """A regex is searched anywhere in the text."""
    assert matches(ContentCheck(regex=r"seq\": \d+"), Message('{"seq": 12}'), {})
    assert not matches(ContentCheck(regex=r"^x"), Message("abc"), {})


def test_json_subset() -> None:
    """Expected keys must be present with equal values; extra keys are allowed; arrays match whole."""
    assert json_subset_problem({"a": 1}, {"a": 1, "b": 2}) is None
    assert json_subset_problem({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 2, "d": 3}]}}) is None
    assert json_subset_problem({"a": 1}, {"b": 1}) == "$.a: missing"
    assert json_subset_problem({"a": True}, {"a": 1}) is not None
    assert json_subset_problem([1, 2], [1]) == "$: expected 2 items, got 1"
    check = ContentCheck(json=JsonTemplate({"id": "{{ n }}", "ok": True}))
    assert check_content(check, Message('{"id": 5, "ok": true, "x": 0}'), {"n": 5}) is None
    failure = check_content(check, Message('{"id": 6, "ok": true}'), {"n": 5})
    assert failure is not None and "$.id: expected 5, got 6" in failure.message


def test_not_json_fails_json_checks() -> None:
    """A JSON check on a non-JSON message fails with 'expected JSON' and the message shown."""
    failure = check_content(ContentCheck(json=JsonTemplate({"a": 1})), Message("plain"), {})
    assert failure is not None and failure.message == "expected JSON, got 'plain'"


def test_json_schema() -> None:
    """A JSON Schema (draft 2020-12) is validated and its first error reported with its path."""
    schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    check = ContentCheck(json_schema=schema)
    assert check_content(check, Message('{"id": 3}'), {}) is None
    failure = check_content(check, Message('{"id": "x"}'), {})
    assert failure is not None and failure.message.startswith("JSON Schema: $.id:")


def _that(*texts: str) -> ContentCheck:
    """A content check of ``that`` entries, built as the loader builds them."""
    return ContentCheck(that=tuple((t, that_expression(t)) for t in texts))


def test_that_comparisons() -> None:
    """JMESPath comparisons: numbers, equality, missing paths and wrong types fail cleanly."""
    doc = Message('{"result": {"count": 3, "items": ["a", "b"], "name": "x"}}')
    ok = _that("result.count >= 3", "result.name == 'x'", "length(result.items) == 2")
    assert check_content(ok, doc, {}) is None
    failure = check_content(_that("result.count > 3"), doc, {})
    assert failure is not None and failure.message == "expected result.count > 3, got 3"
    assert not matches(_that("result.missing > 1"), doc, {})
    assert not matches(_that("result.name < 1"), doc, {})
    assert matches(_that("contains(result.items, 'b')"), doc, {})


def test_binary_length_and_digest() -> None:
    """Binary frames: type, byte length and sha256 digest are checked."""
    data = bytes(range(16))
    digest = hashlib.sha256(data).hexdigest()
    assert check_content(ContentCheck(binary=True, length=16, sha256=digest), Message(data), {}) is None
    assert check_content(ContentCheck(binary=True), Message("text"), {}) is not None
    failure = check_content(ContentCheck(length=10), Message(data), {})
    assert failure is not None and failure.message == "expected 10 bytes, got 16"
    assert check_content(ContentCheck(sha256="0" * 64), Message(data), {}) is not None


def test_json_parsed_once() -> None:
    """A message's JSON is parsed on first use and reused after."""
    msg = Message('{"a": 1}')
    first = msg.json()
    assert msg.json() is first


def test_captures_path_and_regex() -> None:
    """Captures take a JMESPath value or a regex group; a miss is a failure naming the variable."""
    msg = Message('{"result": {"session": "s-42"}}')
    values, failure = apply_captures(
        (Capture("sid", path="result.session"), Capture("num", regex=r"s-(\d+)")), msg
    )
    assert failure is None and values == {"sid": "s-42", "num": "42"}
    _, failure = apply_captures((Capture("x", path="nope"),), msg)
    assert failure is not None and failure.message == "capture x: nope not found"


# --- the per-message match of a flat JSON object ------------------------------------------------

_scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["a", "b", "1", ""]),
    st.booleans(),
    st.none(),
    st.sampled_from([1.0, 2.5]),
)


@settings(max_examples=400, deadline=None)
@given(
    expected=st.dictionaries(st.sampled_from(["seq", "id", "type"]), _scalars, min_size=1, max_size=3),
    actual=st.one_of(
        st.dictionaries(
            st.sampled_from(["seq", "id", "type", "other"]),
            st.one_of(_scalars, st.lists(st.integers(0, 2), max_size=2)),
            max_size=4,
        ),
        st.lists(st.integers(0, 2), max_size=2),
        _scalars,
    ),
    as_variable=st.sets(st.sampled_from(["seq", "id", "type"])),
    spacing=st.sampled_from(["", " ", "\n"]),
)
def test_flat_json_match_agrees_with_the_general_check(
    expected: dict[str, object], actual: object, as_variable: set[str], spacing: str
) -> None:
    """``match: {json: {...}}`` decided by the per-message shortcut gives the same answer as the
    general content check, for values given literally or through ``{{ variables }}``, whatever
    the message holds (other types, 1 vs 1.0 vs true, missing keys, other JSON, whitespace)."""
    spec: dict[str, object] = {}
    ctx: dict[str, object] = {}
    for key, value in expected.items():
        if key in as_variable:
            spec[key] = "{{ v_" + key + " }}"
            ctx["v_" + key] = value
        else:
            spec[key] = value
    check = ContentCheck(json=JsonTemplate(spec))
    text = spacing + json.dumps(actual) + spacing
    general = check_content(check, Message(text), ctx) is None
    assert matches(check, Message(text), ctx) is general
    fast = match_json_fields(check.json_fields, text, ctx) if check.json_fields is not None else None
    assert fast is None or fast is general


def test_flat_json_fields_only_for_a_json_only_check() -> None:
    """The shortcut is derived only where it is the whole check: a flat object of str/int values
    or bare ``{{ name }}``; other checks beside it, nesting, or a computed template: none."""
    assert ContentCheck(json=JsonTemplate({"seq": "{{ n }}", "t": "x", "k": 2})).json_fields == (
        ("seq", "n", None),
        ("t", None, "x"),
        ("k", None, 2),
    )
    assert ContentCheck(json=JsonTemplate({"seq": 1}), contains=Template("x")).json_fields is None
    assert ContentCheck(json=JsonTemplate({"a": {"b": 1}})).json_fields is None
    assert ContentCheck(json=JsonTemplate({"a": "#{{ n }}"})).json_fields is None
    assert ContentCheck(json=JsonTemplate({"a": True})).json_fields is None
    assert ContentCheck(json=JsonTemplate([1])).json_fields is None
    fields = (("seq", "n", None),)
    assert match_json_fields(fields, '{"seq":3,"x":[1]}', {"n": 3}) is True
    assert match_json_fields(fields, '{"seq":4}', {"n": 3}) is False
    assert match_json_fields(fields, '{"other":3}', {"n": 3}) is False
    assert match_json_fields(fields, '{"seq":3.0}', {"n": 3}) is None  # 3 == 3.0: the general path
    assert match_json_fields(fields, '{"seq":3}', {}) is None  # unset: the general path says which
