"""Secrets as values: the forms a ``SecretRegistry`` masks, its bound, a recorder that masks as it
records, and how a scenario marks variables, captures and headers secret (``secrets:``,
``secretHeaders``, ``--secret-var``)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from conftest import scaled

from runner.engine.check import run_check
from runner.errors import ScenarioError, UsageError
from runner.loader import load_scenario_text
from runner.results.codec import encode
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult
from runner.scenario import model as m
from runner.scenario.secrets import MASK, PARTIAL_MIN, REGEX_FORMS, SecretRegistry, SecretText
from runner.scenario.templates import Template
from runner.scenario.variables import parse_vars

Arun = Callable[[Callable[[], Awaitable[Any]]], Any]
ROOT = Path(__file__).resolve().parent.parent


def load(text: str, **kw: Any) -> m.Scenario:
    return load_scenario_text(textwrap.dedent(text), file="t.yaml", **kw)


def problems(text: str, **kw: Any) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load(text, **kw)
    return [str(p) for p in info.value.problems]


# --- the registry ------------------------------------------------------------------------------


def test_every_form_of_a_secret_is_masked() -> None:
    """A value is masked as is, JSON-escaped once and twice (ASCII or not), repr-escaped,
    percent-encoded (both ways), YAML single-quoted and, multi-line, line by line."""
    value = "pa\"ss\\wörd 'x'\nsecond line of the secret"
    once = json.dumps(value)[1:-1]
    forms = [
        value,
        once,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(once)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
        value.replace("'", "''"),
        "second line of the secret",
    ]
    registry = SecretRegistry()
    registry.add(value)
    for form in forms:
        assert registry.mask(f"<{form}>") == f"<{MASK}>", form


def test_userinfo_password_and_basic_credentials_are_secret() -> None:
    """A URL's userinfo, its password alone (as written and decoded), ``user:password`` and the
    Basic credentials websockets sends are masked; the user name alone is not a secret."""
    registry = SecretRegistry()
    registry.add_url("ws://alice:p%40ss-word@127.0.0.1:9/x")
    basic = base64.b64encode(b"alice:p@ss-word").decode()
    text = f"ws://alice:p%40ss-word@h p@ss-word p%40ss-word alice:p@ss-word Basic {basic} alice"
    assert registry.mask(text) == f"ws://{MASK}@h {MASK} {MASK} {MASK} Basic {MASK} alice"
    registry.add_url("wss://only-a-token-1234@host/")
    assert registry.mask("wss://only-a-token-1234@host/") == f"wss://{MASK}@host/"


def test_authorization_credentials_are_masked_alone() -> None:
    """``Bearer <token>`` registers the token too (a server may echo it without the scheme), and
    the values a header was made of."""
    registry = SecretRegistry()
    registry.add_header("Authorization", "Bearer tok-123456", ["tok-123456"])
    registry.add_header("X-Session", "s-{{x}}-part", ["part-of-it"])
    assert registry.mask("Bearer tok-123456 / tok-123456 / part-of-it") == f"{MASK} / {MASK} / {MASK}"


def test_many_secrets_use_the_index_and_mask_alike() -> None:
    """Past ``REGEX_FORMS`` forms the prefix index masks exactly what the regular expression does,
    overlapping secrets whole, and a secret cut by an ellipsis."""
    small, large = SecretRegistry(), SecretRegistry()
    for registry, n in ((small, 3), (large, REGEX_FORMS)):
        registry.add("abcd-secret-1")
        registry.add("cdef-ghij-secret")
        registry.add("token-0000000")
        for i in range(n):
            registry.add(f"token-{i:07d}")
    text = 'x abcd-secret-1 y "token-0000042" z token-0000000 w abcd-secret-1\u2026 abcd-sec\u2026 ab\u2026'
    # token-0000042 is not one (in ``small``): it shares 11 characters with token-0000000, which
    # are masked as a part of a secret would be (PARTIAL_MIN), its own end stays
    want = f'x {MASK} y "{MASK}42" z {MASK} w {MASK}\u2026 {MASK}\u2026 ab\u2026'
    assert small.mask(text) == want
    assert large.mask(text) == want.replace(f'"{MASK}42"', f'"{MASK}"')
    assert large.mask("abcd-secret-1cdef-ghij-secret!") == f"{MASK}!"  # joined, no tail left


def test_tokens_that_share_their_beginning_are_told_apart() -> None:
    """Thousands of tokens with one long common beginning (JWTs of one issuer): each is masked
    where it appears, and a token cut by an ellipsis is; another token of the same issuer has its
    common beginning masked (a part of a secret, PARTIAL_MIN) and keeps its own end."""
    head = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    tokens = [f"{head}payload{i:05d}.signature{i * 7919:09d}" for i in range(2000)]
    registry = SecretRegistry()
    for token in tokens:
        registry.add_header("Authorization", f"Bearer {token}", [token])
    text = f'{{"a": "{tokens[1234]}", "b": "{head}other"}} {tokens[7][:50]}\u2026'
    assert registry.mask(text) == f'{{"a": "{MASK}", "b": "{MASK}other"}} {MASK}\u2026'


def test_registry_is_bounded_and_keeps_static_secrets() -> None:
    """At most ``limit`` registered values are kept, the least recently registered dropped first;
    a value registered again stays, and the values given at construction are never dropped."""
    registry = SecretRegistry(["static-secret"], limit=10)
    registry.add("in-use-token")
    for i in range(100):
        registry.add(f"token-{i:04d}")
        registry.add("in-use-token")  # every open renders it again
    assert len(registry) == 11
    masked = registry.mask("static-secret in-use-token token-0099 token-0000")
    # token-0000, dropped, shares 8 characters (PARTIAL_MIN) with the kept token-0099 and others
    assert masked == f"{MASK} {MASK} {MASK} {MASK}00"
    assert registry.mask("token-0000") != "token-0000" and "token-0000" not in registry


def test_recorder_masks_texts_as_they_are_recorded() -> None:
    """A guarded recorder stores error and failure texts masked (steps made before or after the
    guard alike), so what it serialises for the parent process holds no secret."""
    registry = SecretRegistry()
    recorder = RunRecorder(0)
    early = recorder.step("early", "read")
    recorder.set_mask(registry.mask)
    late = recorder.step("late", "read")
    registry.add("tok-made-at-run-time")
    early.record(ok=False, rc=0, rc_is_success=True, latency_ns=1, error="got tok-made-at-run-time")
    late.add_error(-1, "Cookie: sid=abc")
    recorder.add_failure("late", 3, "got tok-made-at-run-time", "x", '{"t": "tok-made-at-run-time"}')
    data = json.dumps(recorder.take_interval())
    assert "tok-made" not in data and "sid=abc" not in data
    assert recorder.steps["early"].errors == {}  # take_interval started afresh
    assert early.error_groups() == [] and f"got {MASK}" in data and f"Cookie: {MASK}" in data


def test_template_render_parts() -> None:
    """``render_parts`` gives the text and each expression's variable and value, each evaluated
    once (a function call's value is the one in the text)."""
    text, parts = Template("Bearer {{ token }}.{{ uuid() }}.{{ s.id }}").render_parts(
        {"token": "abc", "s": {"id": 7}}
    )
    assert parts[0] == ("token", "abc") and parts[2] == ("s", "7")
    assert parts[1][0] is None and text == f"Bearer abc.{parts[1][1]}.7"
    assert Template("plain").render_parts({}) == ("plain", ())


# --- marking secrets in a scenario -------------------------------------------------------------

SCENARIO = """\
target: embedded
secrets: [password, session]
variables: {password: "pw-file-secret", plain: "not-secret-value"}
connections:
  main:
    url: /echo
    headers:
      Authorization: "Bearer {{ token }}"
      X-Tenant: "{{ tenant }}"
      X-Count: "{{ vu }}"
    secretHeaders: [X-Tenant]
steps:
  - open: main
  - read: main
    capture: {token: access_token, session: session, other: other}
"""


def test_secret_variables_captures_and_headers_are_marked() -> None:
    """Variables and captures listed under ``secrets:`` or feeding a secret header (by name or
    ``secretHeaders``) are secret: declared and --var values at load, captures when made;
    built-in counters and other captures are not."""
    s = load(SCENARIO, variables={"tenant": "tenant-from-var", "cli": SecretText("cli-secret-value")})
    assert {"pw-file-secret", "tenant-from-var", "cli-secret-value"} <= s.secrets
    assert "not-secret-value" not in s.secrets and "1" not in s.secrets
    captures = {c.variable: c.secret for c in s.steps[1].captures}  # type: ignore[union-attr]
    assert captures == {"token": True, "session": True, "other": False}
    assert s.connections["main"].secret_headers == frozenset({"authorization", "x-tenant"})
    assert type(s.variables["cli"]) is str  # the marker does not travel into the model
    assert "pw-file-secret" not in s.source and 'password: "***"' in s.source


SESSION_MISSPELLED = "t.yaml:2:21: secrets[1]: 'sesion' is no variable or capture, did you mean 'session'?"
BUILT_IN = "t.yaml:2:21: secrets[1]: 'vu' is a built-in counter; it cannot be a secret"
HEADER_MISSPELLED = (
    "t.yaml:11:21: connections.main.secretHeaders[0]: 'X-Tenat' is not a header of this connection, "
    "did you mean 'X-Tenant'?"
)
NOTHING_LIKE_IT = (
    "t.yaml:2:21: secrets[1]: 'nothing_like_it' is no variable or capture (declare it under 'variables', "
    "pass --secret-var nothing_like_it=..., or capture it in a read)"
)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("secrets: [password, session]", SESSION_MISSPELLED),
        ("secrets: [password, session]", BUILT_IN),
        ("secretHeaders: [X-Tenant]", HEADER_MISSPELLED),
        ("secrets: [password, session]", NOTHING_LIKE_IT),
    ],
)
def test_marking_mistakes_are_positioned(change: str, expected: str) -> None:
    """A ``secrets:`` entry that names nothing, a built-in, or a ``secretHeaders`` entry that names no
    header of the connection is an error at its position, with a did-you-mean where one is close."""
    wrong = expected.split("'")[1]
    old = change.split("[")[1].split("]")[0].split(", ")[-1]
    text = SCENARIO.replace(change, change.replace(old, wrong))
    assert problems(text, variables={"tenant": "t"}) == [expected]


def test_secret_var_usage_errors_do_not_quote_the_value() -> None:
    """A malformed ``--secret-var`` is a usage error that does not repeat what was given (it may be
    the secret itself); a name given with both --var and --secret-var is refused."""
    with pytest.raises(UsageError) as info:
        parse_vars([], ["hunter2-the-secret"])
    assert "hunter2" not in str(info.value) and "--secret-var: expected NAME=VALUE" in str(info.value)
    with pytest.raises(UsageError, match="'token' is given both with --var and with --secret-var"):
        parse_vars(["token=a"], ["token=b"])
    values = parse_vars(["a=1"], ["b=2"])
    assert (
        values == {"a": "1", "b": "2"}
        and isinstance(values["b"], SecretText)
        and repr(values["b"]) == ("SecretText('***')")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "run", "x.yaml", "--secret-var", "hunter2-the-secret"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(30),
    )
    assert proc.returncode == 2 and "hunter2" not in proc.stdout + proc.stderr, proc.stderr


LOGIN_THAT_FAILS = """\
target: embedded
secrets: [token]
connections:
  login: {url: /echo, timeout: 5s}
steps:
  - open: login
  - write: {connection: login, json: {access_token: "run-time-token-Qz81", ok: false}}
  - read: login
    expect: {json: {ok: true}}
    capture: {token: access_token}
"""


def test_secret_capture_of_a_failed_read_is_masked(arun: Arun) -> None:
    """A read whose checks fail captures nothing, but a secret its captures would have taken is
    registered before the failure (which quotes the message) is recorded."""
    scenario = load(LOGIN_THAT_FAILS)
    result: RunResult = arun(lambda: run_check(scenario, handle_signals=False))
    assert not result.passed
    failure = result.failures[0]
    assert "run-time-token" not in json.dumps(encode(result))
    assert failure.actual == f'{{"access_token":"{MASK}","ok":false}}', failure


TOKEN = "tok-3f9c2a7b51e04d8c9a6b2f1e7d3c5a90"


@pytest.mark.parametrize(
    "reason",
    [
        f"bad token {TOKEN}".encode(),  # echoed whole
        b"bad token " + b"." * 97 + TOKEN.encode()[:16],  # cut by the server at 123 bytes
        f"bad token\n\x1b[31m{TOKEN}".encode(),  # with control characters
    ],
    ids=["whole", "cut", "controls"],
)
def test_a_close_reason_that_echoes_a_secret_is_masked(arun: Arun, reason: bytes) -> None:
    """The server closes with a reason quoting the client's token, whole or cut short at the
    frame's 123-byte limit (shown ending in an ellipsis, as it may have been cut): the close
    reasons and error texts hold none of it, and the close reasons' control characters are
    escaped, in the result and its JSON form."""
    from hostile_servers import HostileServer, close_with

    assert len(reason) <= 123

    async def body() -> RunResult:
        async with HostileServer(close_with(1008, reason)) as server:
            text = (
                f"name: echoes\nvariables: {{token: {TOKEN}}}\nsecrets: [token]\n"
                f"connections:\n  main: {{url: '{server.url}', timeout: 2s}}\n"
                "steps:\n  - open: main\n  - read: main\n  - read: {connection: main, timeout: 2s}\n"
            )
            return await run_check(load(text), handle_signals=False)

    result = arun(body)
    closes = {k: n for s in result.steps for k, n in s.closes.items()}
    assert len(closes) == 1, result.steps
    (shown,) = closes
    assert shown.startswith("1008 bad token") and shown.removesuffix("\u2026").endswith(MASK), shown
    data = json.dumps(encode(result))
    assert TOKEN[:6] not in data and "\x1b" not in shown and "\n" not in shown, data


def test_parts_of_a_secret_are_masked_wherever_they_stand() -> None:
    """A peer that cuts what it echoes, or shows only a token's tail, leaves part of a secret in
    a text: any run of PARTIAL_MIN characters or more that begins or ends it is masked, at the
    end of a text or inside it; shorter runs, and text that only shares a middle, are not."""
    registry = SecretRegistry([TOKEN])
    head, tail = TOKEN[:PARTIAL_MIN], TOKEN[-PARTIAL_MIN:]
    assert registry.mask(f"echo: {head}") == f"echo: {MASK}"
    assert registry.mask(f"reason '{TOKEN[:20]}')") == f"reason '{MASK}')"
    assert registry.mask(f"got '{TOKEN[-25:]} msg two'") == f"got '{MASK} msg two'"
    assert registry.mask(f"{tail} and {head}") == f"{MASK} and {MASK}"
    short = TOKEN[: PARTIAL_MIN - 1]
    assert registry.mask(f"echo: {short}") == f"echo: {short}"
    middle = TOKEN[10:20]
    assert registry.mask(f"echo: {middle}") == f"echo: {middle}"


def test_pinned_values_outlive_the_limit() -> None:
    """A data file's secret column is pinned when picked: 100 later run-time secrets past a
    limit of 10 evict other values, never it (an iteration may echo its row long after)."""
    registry = SecretRegistry(limit=10)
    registry.pin("row-password-0001")
    registry.add("made-at-run-time-0")
    registry.pin("made-at-run-time-0")  # registered, then pinned
    for i in range(100):
        registry.add(f"token-{i:04d}-xyz")
    assert registry.mask("row-password-0001 made-at-run-time-0") == f"{MASK} {MASK}"
    assert "token-0000-xyz" not in registry
