"""The check engine end to end on uvloop and asyncio: real connections to the embedded server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from runner.engine.check import run_check
from runner.loader import load_scenario_text
from runner.results.result import RunResult, StepResult

Arun = Callable[[Callable[[], Any]], Any]


def _run(arun: Arun, text: str, **kwargs: Any) -> RunResult:
    scenario = load_scenario_text(text, "inline.yaml", **kwargs)
    result: RunResult = arun(lambda: run_check(scenario, handle_signals=False))
    return result


def _step(result: RunResult, name: str) -> StepResult:
    return next(s for s in result.steps if s.name == name)


def test_two_connections_capture_and_variables(arun: Arun) -> None:
    """Several connections per user; a capture from one read feeds a later write; --var overrides."""
    result = _run(
        arun,
        """
name: capture
target: embedded
variables: {who: file}
connections:
  rpc: {url: /rpc, timeout: 5s}
  echo: {url: /echo, timeout: 5s}
steps:
  - open: rpc
  - open: echo
  - write: {connection: rpc, json: {method: m, id: 1, payload: "{{ who }}"}}
  - read:
      connection: rpc
      timeout: 2s
    expect: {json: {id: 1, result: {payload: cli}}}
    capture: {sid: result.session}
  - write: {connection: echo, text: "session {{ sid }} vu {{ vu }} it {{ iteration }}"}
  - read:
      connection: echo
      timeout: 2s
    expect: {regex: "^session \\\\d+ vu 1 it 0$"}
  - close: rpc
  - close: echo
""",
        variables={"who": "cli"},
    )
    assert result.passed, result.failures
    assert [s.count for s in result.steps] == [1] * 8
    assert result.exit_code == 0 and result.iterations.completed == 1


def test_repeat_counts_every_round(arun: Arun) -> None:
    """A repeat block runs its steps N times; each inner step's row counts all N."""
    result = _run(
        arun,
        """
name: repeat
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - repeat:
      times: 5
      steps:
        - write: {connection: main, text: x}
        - read: main
  - ping: main
  - close: main
""",
    )
    assert result.passed
    assert _step(result, "write main").count == 5
    read = _step(result, "read main")
    assert read.count == 5 and read.ok == 5 and read.latency_ms is not None
    assert _step(result, "ping main").latency_ms is not None


def test_match_skips_messages_and_counts_them(arun: Arun) -> None:
    """A read with match waits for the first matching message and counts those it skipped."""
    result = _run(
        arun,
        """
name: match
target: embedded
connections: {feed: {url: "/push?rate=200&count=50", timeout: 5s}}
steps:
  - open: feed
  - read:
      connection: feed
      timeout: 3s
      match: {that: seq == 5}
    expect: {that: [seq == 5]}
  - close: feed
""",
    )
    assert result.passed
    assert _step(result, "read feed").skipped_messages == 5


def test_expected_failure_of_open_passes(arun: Arun) -> None:
    """``expect: {rc: -1, error: ...}`` on an open to a rejecting route makes the failure the pass."""
    result = _run(
        arun,
        """
name: rejected
target: embedded
connections: {main: {url: /status/403, timeout: 5s}}
steps:
  - open: main
    expect: {rc: -1, error: "HTTP 403"}
""",
    )
    assert result.passed, result.failures
    step = result.steps[0]
    assert step.ok == 1 and step.rc == {"-1": 1}


def test_error_alone_on_an_open_means_it_must_fail(arun: Arun) -> None:
    """``expect: {error: KEYWORD}`` without ``rc``: the open must fail with that error. A rejected
    open passes; an open that succeeds fails, saying it was expected to fail."""
    result = _run(
        arun,
        """
name: error alone
target: embedded
connections:
  rejected: {url: /status/403, timeout: 5s}
steps:
  - open: rejected
    expect: {error: "HTTP 403"}
""",
    )
    assert result.passed, result.failures
    assert result.steps[0].ok == 1 and result.steps[0].rc == {"-1": 1}
    result = _run(
        arun,
        """
name: error alone, but the open works
target: embedded
connections:
  fine: {url: /echo, timeout: 5s}
steps:
  - open: fine
    expect: {error: "HTTP 403"}
""",
    )
    assert not result.passed and result.exit_code == 1
    assert "expected it to fail with error 'HTTP 403'" in result.failures[0].message


#: A request to /rpc whose answer the ``that`` expressions below read: {"id": 7, "result":
#: {"method": "m", "payload": {"a": 1, "b": 1, "c": 2, "name": "x"}, "session": ...}}.
THAT_SCENARIO = """
name: that
target: embedded
connections: {rpc: {url: /rpc, timeout: 5s}}
steps:
  - open: rpc
  - write: {connection: rpc, json: {method: m, id: 7, payload: {a: 1, b: 1, c: 2, name: x}}}
  - read: {connection: rpc, timeout: 2s}
    expect:
      that: THAT
  - close: rpc
"""


@pytest.mark.parametrize(
    "expression",
    [
        "result.payload.a == `1`",  # a JMESPath literal
        "result.payload.a == result.payload.b",  # path to path
        "result.payload.c > result.payload.a",
        "id == `7` && result.method == 'm'",
        "!(result.payload.a == `2`) || result.payload.c == `99`",
        "length(result.payload) == `4`",
        "id == 7",  # the forms that worked before: a bare JSON value beside a comparator
        "result.session != null",
        "result.payload.name == 'x'",
        'result.payload.name == "x"',
        "result.payload.a >= 1 && result.payload.a < 1.5",
    ],
)
def test_that_is_a_jmespath_expression_that_must_be_true(arun: Arun, expression: str) -> None:
    """``that`` entries are JMESPath expressions evaluated on a real /rpc answer: literals in
    backticks and path-to-path comparisons match (they never did), and the older forms still do."""
    text = THAT_SCENARIO.replace("THAT", f"[{json.dumps(expression)}]")
    result = _run(arun, text)
    assert result.passed, result.failures


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("result.payload.a == `2`", "expected result.payload.a == `2`, got 1"),
        ("result.payload.a == result.payload.c", "expected result.payload.a == result.payload.c, got 1"),
        ("result.payload.c < result.payload.a", "expected result.payload.c < result.payload.a, got 2"),
        ("result.missing", "expected result.missing, got null"),
        ("id == 8", "expected id == 8, got 7"),
    ],
)
def test_that_which_does_not_hold_fails_its_read(arun: Arun, expression: str, message: str) -> None:
    """A ``that`` expression that comes out false fails the read, showing the left side's value."""
    result = _run(arun, THAT_SCENARIO.replace("THAT", f"[{json.dumps(expression)}]"))
    assert not result.passed and result.exit_code == 1
    assert result.failures[0].message == message


def test_failed_step_skips_rest_and_closes(arun: Arun) -> None:
    """After a failed step the rest of the iteration is skipped and counted as skipped."""
    result = _run(
        arun,
        """
name: fail early
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - write: {connection: main, text: a}
  - read:
      connection: main
      timeout: 2s
    expect: {text: b}
  - repeat:
      times: 3
      steps:
        - write: {connection: main, text: c}
  - close: main
""",
    )
    assert not result.passed and result.exit_code == 1
    assert _step(result, "read main").failures == 1
    assert _step(result, "write main #2").skipped == 1 and _step(result, "write main #2").count == 0
    assert _step(result, "close main").skipped == 1
    assert result.failures[0].expected == "b" and result.failures[0].actual == "a"
    assert result.iterations.failed == 1


def test_latency_expectation(arun: Arun) -> None:
    """``latency: < 20ms`` fails a read whose answer comes 100 ms after the write."""
    result = _run(
        arun,
        """
name: slow
target: embedded
connections: {main: {url: "/slow?delay=0.1", timeout: 5s}}
steps:
  - open: main
  - write: {connection: main, text: a}
  - read:
      connection: main
      timeout: 2s
    expect: {latency: < 20ms}
""",
    )
    read = _step(result, "read main")
    assert read.failures == 1
    assert read.latency_ms is not None and read.latency_ms.max >= 90  # timers may fire a ms early
    assert "expected < 20.000ms" in read.errors[0].message


def test_unexpected_error_is_stamped_with_step(arun: Arun) -> None:
    """A client that raises inside a step fails that step (rc -1, an internal-error text naming the
    exception) and the run, whatever the step expected; the report names the step and its line."""
    from runner.client import WebSocketClient

    class Broken(WebSocketClient):
        def write(self, socket: int, data: str | bytes) -> int:
            raise RuntimeError("boom")

    scenario = load_scenario_text(
        "name: b\ntarget: embedded\nconnections: {main: {url: /echo, timeout: 5s}}\n"
        "steps:\n  - open: main\n  - write: {connection: main, text: x}\n",
        "inline.yaml",
    )
    result: RunResult = arun(lambda: run_check(scenario, client_factory=Broken, handle_signals=False))
    assert not result.passed and result.exit_code == 1
    assert result.error == "internal error in 1 step execution(s): 'write main' (line 6) 1x"
    write = result.steps[1]
    assert write.internal_errors == 1 and write.failures == 1 and write.rc == {"-1": 1}
    assert write.errors[0].message == "internal error (a bug in wsload): RuntimeError: boom"


def test_embedded_tls_is_verified_with_its_ca(arun: Arun) -> None:
    """``target: embedded-tls`` trusts the generated CA, so a plain wss scenario verifies fully."""
    result = _run(
        arun,
        "name: t\ntarget: embedded-tls\nconnections: {main: {url: /echo, timeout: 5s}}\n"
        "steps:\n  - open: main\n  - ping: main\n  - close: main\n",
    )
    assert result.passed, result.failures
    assert result.tls.verified and result.tls.ignored_errors == () and result.tls.allowed == ()
    assert result.target.startswith("embedded (wss://127.0.0.1:")
    assert result.steps[0].connect_ms is not None and "tls" in result.steps[0].connect_ms


def test_expected_peer_close_then_close(arun: Arun) -> None:
    """A read may expect the peer's close (rc 1); the connection can still be closed after it."""
    result = _run(
        arun,
        """
name: closes
target: embedded
connections: {main: {url: "/close?code=4001&after=0", timeout: 5s}}
steps:
  - open: main
  - read:
      connection: main
      timeout: 2s
    expect: {rc: 1}
  - close: main
""",
    )
    assert result.passed, result.failures
    assert _step(result, "read main").rc == {"1": 1}


def test_overall_run_bound(arun: Arun) -> None:
    """``defaults.run_timeout`` bounds the whole check: the run fails with a run time-out."""
    result = _run(
        arun,
        "name: bound\ntarget: embedded\ndefaults: {run_timeout: 300ms}\n"
        "connections: {main: {url: /echo, timeout: 5s}}\n"
        "steps:\n  - open: main\n  - sleep: 10s\n  - close: main\n",
    )
    assert not result.passed and result.exit_code == 1 and not result.interrupted
    assert result.error == (
        "run time-out: the scenario did not finish within 0.3s (step 'sleep' at line 7 was still waiting)"
    )
    assert 0.25 < result.duration_s < 3


def test_match_time_out_holds_on_a_busy_stream(arun: Arun) -> None:
    """A matching read on a stream that never pauses still ends at its time-out, rc -2."""
    result = _run(
        arun,
        """
name: busy
target: embedded
connections: {feed: {url: "/push?rate=5000&count=100000", timeout: 5s}}
steps:
  - open: feed
  - read:
      connection: feed
      timeout: 200ms
      match: {that: seq == -1}
""",
    )
    read = _step(result, "read feed")
    assert read.rc == {"-2": 1} and read.skipped_messages > 10
    assert result.duration_s < 2


def test_repeat_index_numbers_the_rounds(arun: Arun) -> None:
    """``index: n`` gives the block's steps the round number 0..times-1: each echo carries its own
    sequence number and a read matching it passes every round; a read expecting the next number
    fails in the first round, which the report names."""
    text = """
name: index
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
defaults: {read_timeout: 2s}
steps:
  - open: main
  - repeat:
      times: 4
      index: n
      steps:
        - write: {connection: main, json: {seq: "{{ n }}", vu: "{{ vu }}"}}
        - read:
            connection: main
            match: {json: {seq: "{{ n }}"}}
          expect: {json: {seq: "{{ n }}"}}
  - close: main
"""
    result = _run(arun, text)
    assert result.passed
    read = _step(result, "read main")
    assert (read.count, read.ok, read.skipped_messages) == (4, 4, 0)

    wrong = _run(
        arun,
        text.replace('match: {json: {seq: "{{ n }}"}}', "timeout: 1s").replace(
            'expect: {json: {seq: "{{ n }}"}}', "expect: {json: {seq: 1}}"
        ),
    )
    assert not wrong.passed
    read = _step(wrong, "read main")
    assert (read.count, read.failures) == (1, 1)  # round 0 sent seq 0, not 1
    failure = next(f for f in wrong.failures if f.step == "read main")
    assert "$.seq" in failure.message and failure.expected == '{"seq":1}'


def test_failure_in_a_later_round_stops_the_block_and_skips_the_rest(arun: Arun) -> None:
    """A read failing in round 3 of 5 ends the block there: rounds 1-2 pass, the step after the
    read is skipped once (the rest of round 3), rounds 4-5 never run, and the steps after the
    block are skipped; the connection is still closed at the end of the iteration."""
    result = _run(
        arun,
        """
name: rounds
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - repeat:
      times: 5
      index: n
      steps:
        - write: {connection: main, json: {seq: "{{ n }}"}}
        - read: main
          expect: {that: ["seq < 2"]}
        - sleep: 1ms
  - ping: main
""",
    )
    assert not result.passed
    write, read, sleep, ping = (_step(result, n) for n in ("write main", "read main", "sleep", "ping main"))
    assert (write.count, read.count, read.ok, read.failures) == (3, 3, 2, 1)
    assert (sleep.count, sleep.skipped) == (2, 1)
    assert (ping.count, ping.skipped) == (0, 1)


_EVIL = "(a|aa)+$"  # on 34 "a" and a "b": ~1.5 s with re (bounded, should this regress), 100 ms here


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            f'expect: {{regex: "{_EVIL}"}}',
            f"expect: /{_EVIL}/ gave up after 100 ms on a message of 35 characters",
        ),
        (
            f'capture: {{x: {{regex: "({_EVIL})"}}}}',
            f"capture x: /({_EVIL})/ gave up after 100 ms on a message of 35 characters",
        ),
    ],
    ids=["expect", "capture"],
)
def test_catastrophic_regex_fails_its_step_in_bounded_time(arun: Arun, check: str, message: str) -> None:
    """A pattern that backtracks for ever on the message it meets (as an expectation or a capture)
    fails its step after 100 ms with a text that says so, instead of holding the event loop."""
    start = time.monotonic()
    result = _run(
        arun,
        f"""
name: backtracking
target: embedded
connections:
  echo: {{url: /echo, timeout: 5s}}
steps:
  - open: echo
  - write: {{connection: echo, text: "{"a" * 34}b"}}
  - name: checked
    read: {{connection: echo, timeout: 2s}}
    {check}
  - close: echo
""",
    )
    assert time.monotonic() - start < 3
    assert not result.passed and result.exit_code == 1
    assert _step(result, "checked").failures == 1
    assert result.failures[0].message.startswith(message)
    assert result.failures[0].message.endswith("(catastrophic backtracking: make the pattern more specific)")
