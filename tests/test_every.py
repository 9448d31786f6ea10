"""``every`` (issue 16 §4): a block repeated in the background while the steps after it run, e.g.
a chat user who speaks every few seconds while reading the room. Against our embedded room and
the Node ``ws`` broadcast room; the failure paths (a failed round, a failed main flow, the end of
the run, a close while a round is in flight) and what the loader refuses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scenario_runs import run_scenario as _run
from scenario_runs import step_named as _step

from runner.errors import ScenarioError
from runner.loader import load_scenario_text

CHAT = """\
name: chat
target: embedded
connections:
  room: {url: "/room/ROOM", timeout: 5s}
steps:
  - open: room
  - sleep: 500ms                  # everyone has joined before anyone speaks
  - every:
      interval: 300ms
      steps:
        - name: say
          write: {connection: room, json: {from: "{{ vu }}", sent_at: "{{ now_ms() }}"}}
  - repeat:
      times: 30                   # three rounds of ten members, ours included
      steps:
        - name: hear
          read: {connection: room, latency_from: {json: sent_at, unit: ms}}
  - close: room
load: {vus: 10, iterations: 1}
"""


def test_members_speak_in_the_background_while_they_read_the_room(tmp_path: Path) -> None:
    """Ten members each speak every 300 ms while reading thirty messages: every message is read
    with its delivery latency, the writes stop when the reading ends (three or four rounds
    each, never a round after the close) and nothing fails."""
    code, doc = _run(tmp_path, CHAT.replace("ROOM", "every1"))
    assert code == 0, (doc["error"], doc["problems"])
    say, hear = _step(doc, "say"), _step(doc, "hear")
    assert hear["count"] == hear["ok"] == 300 and hear["delivery_ahead"] == 0
    assert hear["delivery_ms"]["max"] < 1000, hear["delivery_ms"]
    assert 30 <= say["count"] <= 40 and say["failures"] == 0, say
    assert doc["iterations"]["completed"] == 10


def test_the_same_room_on_the_node_ws_server_over_two_workers(tmp_path: Path, node_ws_url: str) -> None:
    """The chat room on a broadcast server we did not write, users split over two processes:
    the counts add up as on our own room."""
    code, doc = _run(tmp_path, CHAT.replace("ROOM", "every2"), "--target", node_ws_url, "--workers", "2")
    assert code == 0, (doc["error"], doc["problems"])
    say, hear = _step(doc, "say"), _step(doc, "hear")
    assert hear["count"] == hear["ok"] == 300 and say["failures"] == 0 and say["count"] >= 30, (say, hear)


CLOSING = """\
name: closing
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - every:
      interval: 10ms
      steps:
        - name: tick
          write: {connection: main, text: tick}
  - sleep: 300ms
  - close: main
load: {vus: 50, iterations: 2}
"""


def test_a_close_stops_the_background_using_it_first(tmp_path: Path) -> None:
    """Fifty users write every 10 ms in the background and close the connection after 300 ms:
    the background ends before the close, so no write ever meets a closed connection."""
    code, doc = _run(tmp_path, CLOSING)
    assert code == 0, (doc["error"], doc["problems"])
    tick = _step(doc, "tick")
    assert tick["failures"] == 0 and tick["errors"] == [], tick
    assert 100 * 20 <= tick["count"] <= 100 * 32, tick["count"]  # ~30 rounds per iteration


FINISHING = """\
name: finishing
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - every:
      interval: 100ms
      steps:
        - sleep: 300ms
          name: pause
        - name: late
          write: {connection: main, text: late}
  - sleep: 450ms
  - close: main
"""


def test_a_round_in_flight_runs_to_its_end(tmp_path: Path) -> None:
    """Rounds of 300 ms every 100 ms (so back to back: no overlap, no catch-up) beside a main
    flow of 450 ms: the second round is in flight when the main flow closes, and ends first,
    whole: two pauses, two writes, nothing cut or failed."""
    started = time.monotonic()
    code, doc = _run(tmp_path, FINISHING)
    took = time.monotonic() - started
    assert code == 0, (doc["error"], doc["problems"])
    assert _step(doc, "pause")["count"] == 2 and _step(doc, "late")["count"] == 2
    assert _step(doc, "late")["failures"] == 0
    assert took >= 0.6


BROKEN_ROUND = """\
name: broken round
target: embedded
connections:
  a: {url: /echo, timeout: 5s}
  b: {url: /echo, timeout: 5s}
steps:
  - open: a
  - open: b
  - every:
      interval: 100ms
      steps:
        - write: {connection: b, text: "not json"}
        - name: answer
          read: b
          expect: {json: {ok: true}}
  - sleep: 600ms
    name: main wait
  - close: b
  - close: a
"""


def test_a_failed_round_stops_the_background_and_fails_the_iteration(tmp_path: Path) -> None:
    """The background's first round fails its check: no second round, the main flow runs to its
    end (its wait whole), and the iteration fails with the background step's reason."""
    code, doc = _run(tmp_path, BROKEN_ROUND)
    assert code == 1
    answer = _step(doc, "answer")
    assert answer["count"] == 1 and answer["failures"] == 1, answer
    assert _step(doc, "main wait")["ok"] == 1
    assert doc["iterations"]["failed"] == 1
    assert doc["failures"][0]["step"] == "answer"


ABANDONED = """\
name: abandoned
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - every:
      interval: 100ms
      steps:
        - sleep: 3s
          name: long pause
        - name: never
          write: {connection: main, text: x}
  - name: nothing comes
    read: {connection: main, timeout: 300ms}
  - close: main
"""


def test_a_failed_main_flow_abandons_the_background(tmp_path: Path) -> None:
    """The main flow's read times out after 300 ms: the background's pause in flight is not
    waited for but counted as skipped, and the run fails with the read's reason at once."""
    started = time.monotonic()
    code, doc = _run(tmp_path, ABANDONED)
    took = time.monotonic() - started
    assert code == 1 and took < 2.5, took
    pause = _step(doc, "long pause")
    assert pause["count"] == 0 and pause["skipped"] == 1, pause
    assert _step(doc, "never")["count"] == 0
    assert _step(doc, "nothing comes")["rc"] == {"-2": 1}


CUT = """\
name: cut
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - every:
      interval: 100ms
      steps:
        - name: beat
          write: {connection: main, text: x}
        - sleep: 10s
          name: long pause
  - sleep: 10s
    name: main pause
  - close: main
load: {vus: 4, duration: 1s}
"""


def test_the_end_of_the_run_cuts_the_background_as_pending(tmp_path: Path) -> None:
    """A load run of 1 s ends while every user's main flow and background are both waiting:
    each is counted as pending, none as failed or lost, and the report is complete."""
    started = time.monotonic()
    code, doc = _run(tmp_path, CUT)
    took = time.monotonic() - started
    assert took < 8, took
    assert _step(doc, "long pause")["pending"] == 4 and _step(doc, "main pause")["pending"] == 4
    assert _step(doc, "beat")["count"] == 4 and _step(doc, "beat")["failures"] == 0
    assert all(s["internal_errors"] == 0 for s in doc["steps"])
    assert doc["iterations"]["interrupted"] == 4
    assert code in (0, 1)  # (the verdict on cut waits is test_verdict's; here: counted, not lost)


HEAD = """\
name: refused
target: embedded
connections:
  a: {url: /echo}
  b: {url: /echo}
steps:
  - open: a
  - open: b
"""


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            "  - every: {interval: 1s, steps: [{open: a}]}\n  - sleep: 1s\n",
            "t.yaml:9:34: steps[2].every.steps: 'open' on line 9 is inside 'every': the background "
            "cannot open or close connections; open them before the block and close them after it",
        ),
        (
            "  - sleep: 1s\n  - every: {interval: 1s, steps: [{write: {connection: a, text: x}}]}\n",
            "t.yaml:10:12: steps[3].every: nothing follows this 'every' in its block",
        ),
        (
            "  - every: {interval: 1s, steps: [{read: a}]}\n  - repeat: {times: 2, steps: [{read: a}]}\n",
            "t.yaml:9:12: steps[2].every: connection 'a' is read both in this background (line 9) and "
            "in a step after it (line 10): two reads at once would take each other's messages",
        ),
        (
            "  - every: {interval: 1s, steps: [{read: a}]}\n  - every: {interval: 1s, steps: [{read: a}]}\n"
            "  - sleep: 1s\n",
            "connection 'a' is read both in this background (line 9) and in a step after it (line 10)",
        ),
        (
            "  - every: {interval: 1s, steps: [{every: {interval: 1s, steps: [{sleep: 1s}]}}, {sleep: 1s}]}\n"
            "  - sleep: 1s\n",
            "'every' on line 9 is inside another 'every'",
        ),
        (
            "  - every: {interval: 0s, steps: [{write: {connection: a, text: x}}]}\n  - sleep: 1s\n",
            "steps[2].every.interval: an interval of 0s would repeat the block without pause; "
            "give at least 1ms",
        ),
        (
            "  - every: {intervall: 1s, steps: [{sleep: 1s}]}\n  - sleep: 1s\n",
            "t.yaml:9:13: steps[2].every.intervall: unknown key 'intervall', did you mean 'interval'?",
        ),
    ],
)
def test_what_the_loader_refuses_names_file_and_line(steps: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(HEAD + steps, file="t.yaml")
    text = str(info.value)
    assert message in text, text


def test_reads_of_other_connections_and_writes_of_the_same_are_allowed() -> None:
    """A background writing the connection the main flow reads (the chat room), or reading one
    the main flow does not: both load."""
    scenario = load_scenario_text(
        HEAD
        + "  - every: {interval: 1s, steps: [{write: {connection: a, text: x}}, {read: b}]}\n"
        + "  - read: a\n",
        file="t.yaml",
    )
    assert [s.kind for s in scenario.steps] == ["open", "open", "every", "read"]


HEARTBEAT = """\
name: holders with a heartbeat
target: embedded
connections:
  main: {url: /echo, timeout: 10s}
  hb: {url: /echo, timeout: 10s}
steps:
  - open: main
  - open: hb
  - every:
      interval: 500ms
      steps:
        - name: heartbeat
          ping: hb
  - repeat:
      times: 3600
      index: seq
      steps:
        - write: {connection: main, json: {vu: "{{ vu }}", seq: "{{ seq }}"}}
        - read: {connection: main, match: {json: {vu: "{{ vu }}", seq: "{{ seq }}"}}}
        - sleep: 300ms
  - close: main
  - close: hb
load: {vus: 10, duration: 3s, graceful_stop: 1s, hold: true}
"""


def test_a_background_between_rounds_has_nothing_in_flight(tmp_path: Path) -> None:
    """Users holding a connection with a heartbeat every 500 ms, cut at the end of the run: the
    heartbeat is idle between rounds, so it is not 'still in flight' (it was counted pending
    with the time since its last round, and the run failed as stalled)."""
    code, doc = _run(tmp_path, HEARTBEAT)
    heartbeat = _step(doc, "heartbeat")
    assert heartbeat["pending"] == 0 and heartbeat["count"] >= 50, heartbeat
    assert code == 0, (doc["error"], doc["problems"])


ZERO_ROUNDS = """\
name: announce then close
target: embedded
connections: {c: {url: /echo, timeout: 5s}, d: {url: /echo, timeout: 5s}}
steps:
  - open: c
  - open: d
  - every: {interval: 1s, steps: [{name: announce, write: {connection: c, text: "I am here"}}]}
  - {name: main write, write: {connection: d, text: x}}
  - close: c
  - close: d
"""


def test_the_first_round_runs_even_when_the_close_comes_at_once(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, ZERO_ROUNDS)
    assert code == 0 and _step(doc, "announce")["count"] == 1, _step(doc, "announce")


RESPONSE = """\
name: asking write of its own flow
target: embedded
connections: {e: {url: /echo, timeout: 5s}}
steps:
  - open: e
  - every: {interval: 50ms, steps: [{name: noise, write: {connection: e, text: noise}}]}
  - {name: ask, write: {connection: e, text: question}}
  - sleep: 300ms
  - name: answer
    read: {connection: e, timeout: 2s, match: {text: question}}
  - close: e
"""


def test_a_reads_response_time_starts_at_its_own_flows_write(tmp_path: Path) -> None:
    """The main flow asks, waits 300 ms and reads the answer while a background writes every
    50 ms on the same connection: the response time runs from the main flow's write (~300 ms),
    not from the background's last one (it said ~50 ms)."""
    code, doc = _run(tmp_path, RESPONSE)
    assert code == 0, doc["error"]
    assert _step(doc, "answer")["response_ms"]["p50"] >= 290


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            "  - every: {interval: 1s, steps: [{read: {connection: a, timeout: 3s}}]}\n"
            "  - quiet: {connection: a, for: 200ms}\n",
            "connection 'a' is read both in this background (line 9) and in a step after it (line 10)",
        ),
        (
            "  - every: {interval: 1s, steps: [{repeat: {times: 2, index: i, steps: [{sleep: 1ms}]}}]}\n"
            "  - repeat: {times: 2, index: i, steps: [{write: {connection: a, text: '{{ i }}'}}]}\n",
            "variable 'i' is set or used in this background (line 9) and in a step after it (line 10), "
            "one of them setting it: the value it holds would depend on timing",
        ),
        (
            "  - every: {interval: 1s, steps: [{read: b, capture: {token: token}}]}\n"
            "  - write: {connection: a, text: 'token={{ token }}'}\n",
            "variable 'token' is set or used in this background (line 9) and in a step after it (line 10)",
        ),
    ],
)
def test_what_timing_would_decide_is_refused(steps: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(HEAD + steps, file="t.yaml")
    assert message in str(info.value), str(info.value)


def test_a_threshold_on_a_block_is_refused() -> None:
    text = HEAD + "  - name: beat\n    every: {interval: 1s, steps: [{sleep: 1ms}]}\n  - sleep: 1s\n"
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text + "thresholds:\n  - beat.failures == 0\n", file="t.yaml")
    assert "'beat' is a block (every): the steps inside it are measured, not the block" in str(info.value)
