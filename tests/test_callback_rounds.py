"""Callback rounds (``runner.engine.rounds``): a block of writes and reads run in the connections'
callbacks gives the report the task gives, step by step, on every path a server can force: an
answer, a close with a code, a hang, a flood of other messages, a reset, a peer that does not
read, a cut at the end of a run, captures and content checks. Each case runs twice, with the
rounds on and off (``WSLOAD_CALLBACK_ROUNDS=0``), against the Node ``ws`` server, aiohttp, or a
hostile server of ours; what the user reads (verdict, exit code, counts, return codes, error
texts, skipped steps and messages) must be what the case says, and the same both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import aiohttp_server, scaled
from hostile_servers import (
    Behaviour,
    HostileServer,
    close_frame,
    echo_then_hang,
    flood,
    frame,
    read_client_frame,
    upgrade_response,
)
from scenario_runs import run_scenario, step_named

from runner.engine import rounds

# --- servers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def threaded(behaviour: Behaviour, *, rcvbuf: int | None = None) -> Iterator[str]:
    """A ``HostileServer`` on a loop of its own thread (``wsload run`` runs its own loop here)."""
    loop = asyncio.new_event_loop()
    server = HostileServer(behaviour, rcvbuf=rcvbuf)
    loop.run_until_complete(server.__aenter__())
    thread = threading.Thread(target=loop.run_forever, name="hostile-server", daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(timeout=scaled(10))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=scaled(10))
        loop.close()


def noisy_echo(noise: int) -> Behaviour:
    """Echoes each text frame after ``noise`` other text messages (``{"other": n}``)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key))
        for _ in range(100_000):
            opcode, payload = await read_client_frame(reader)
            if opcode == 0x8:
                return
            writer.write(
                b"".join(frame(0x1, b'{"other": %d}' % n) for n in range(noise)) + frame(0x1, payload)
            )
            await writer.drain()

    return behaviour


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str, answers: int) -> bytes:
    """Upgrade, echo ``answers`` text frames, and return the payload of the next one."""
    writer.write(upgrade_response(key))
    for _ in range(answers):
        _, payload = await read_client_frame(reader)
        writer.write(frame(0x1, payload))
        await writer.drain()
    return (await read_client_frame(reader))[1]


def echo_then_reset(answers: int) -> Behaviour:
    """Echoes ``answers`` text frames, then resets the connection (RST) on the next one."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        await _echo(reader, writer, key, answers)
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.transport.abort()

    return behaviour


def answer_then_close(answers: int, tail: bytes) -> Behaviour:
    """Echoes ``answers`` text frames, then sends the next echo and ``tail`` (a close frame, a
    frame that breaks the protocol) in one write: one TCP packet."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        payload = await _echo(reader, writer, key, answers)
        writer.write(frame(0x1, payload) + tail)
        await writer.drain()
        for _ in range(5):
            opcode, _ = await read_client_frame(reader)
            if opcode == 0x8:
                return

    return behaviour


async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    """Upgrades and never reads again."""
    writer.write(upgrade_response(key))
    await writer.drain()
    writer.transport.pause_reading()  # type: ignore[attr-defined]
    await asyncio.Event().wait()


# --- the runs -----------------------------------------------------------------------------------


def scenario(url: str, block: str, *, times: int = 50, read_timeout: str = "5s", load: str = "") -> str:
    """One connection, then ``times`` rounds of ``block`` (write and read steps), then a close."""
    indented = "\n".join("        " + line for line in block.strip("\n").splitlines())
    return f"""\
name: rounds
connections:
  main: {{url: "{url}", timeout: 5s}}
defaults:
  read_timeout: {read_timeout}
steps:
  - open: main
  - repeat:
      times: {times}
      index: seq
      steps:
{indented}
  - name: bye
    close: main
{load}"""


ECHO_BLOCK = """\
- write: {connection: main, json: {op: echo, seq: "{{ seq }}"}}
- name: answer
  read: {connection: main, match: {json: {seq: "{{ seq }}"}}}
"""


def _view(code: int, doc: dict[str, Any]) -> dict[str, Any]:
    """What a user reads in the report, without the figures that differ from run to run."""
    return {
        "exit": code,
        "passed": doc["passed"],
        "iterations": doc["iterations"],
        "steps": [
            {
                k: s[k]
                for k in ("name", "count", "ok", "failures", "skipped", "skipped_messages", "rc", "pending")
                if k in s
            }
            | {"errors": sorted(e["message"] if isinstance(e, dict) else str(e) for e in s["errors"])}
            for s in doc["steps"]
        ],
        "failures": sorted(json.dumps(f, sort_keys=True) for f in doc["failures"]),
    }


def both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, *args: str, counts_vary: bool = False
) -> tuple[int, dict[str, Any]]:
    """Run ``text`` with the callback rounds on and off: the reports must agree; returns the
    run with them on. ``counts_vary``: a server stopping part-way (a time) leaves the counts to
    chance, so only the rest is compared."""
    used = []
    real_go = rounds.Rounds.go

    def go(self: rounds.Rounds) -> Any:
        used.append(1)
        return real_go(self)

    monkeypatch.setattr(rounds.Rounds, "go", go)
    views = []
    for enabled in (True, False):
        monkeypatch.setattr(rounds, "ENABLED", enabled)
        (tmp_path / str(enabled)).mkdir()
        code, doc = run_scenario(tmp_path / str(enabled), text, *args)
        view = _view(code, doc)
        if counts_vary:
            for s in view["steps"]:
                for k in ("count", "ok", "skipped_messages"):
                    s.pop(k, None)
                s["errors"] = [re.sub(r"\d+ (other messages|bytes)", r"N \1", e) for e in s["errors"]]
            view["failures"] = [re.sub(r"\d+ (other messages|bytes)", r"N \1", f) for f in view["failures"]]
        views.append(view)
        if enabled:
            on = (code, doc)
            assert used, "the block did not run as callback rounds"
            used.clear()
        else:
            assert not used, "WSLOAD_CALLBACK_ROUNDS=0 still ran callback rounds"
    assert views[0] == views[1]
    return on


# --- the cases ----------------------------------------------------------------------------------


def test_a_request_and_its_answer_against_node_ws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node_ws_url: str
) -> None:
    """The load run's own case: every write and every answer counted, the round number sent
    and matched, latencies and response times recorded."""
    code, doc = both_ways(tmp_path, monkeypatch, scenario(f"{node_ws_url}/echo", ECHO_BLOCK, times=300))
    assert code == 0 and doc["passed"]
    answer = step_named(doc, "answer")
    assert (answer["count"], answer["ok"], answer["failures"]) == (300, 300, 0)
    assert step_named(doc, "write main")["count"] == 300
    assert answer["latency_ms"]["max"] > 0
    assert answer["response_ms"]["p50"] > 0


def test_a_close_with_a_code_ends_the_read_with_rc_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp closes with 4001 "bye" after the first message: the read returns 1 with the code
    and reason, the block fails in its first round, the close step after it is skipped."""
    with aiohttp_server() as url:
        code, doc = both_ways(
            tmp_path, monkeypatch, scenario(f"{url}/close?code=4001&reason=bye", ECHO_BLOCK)
        )
    assert code == 1 and not doc["passed"]
    answer = step_named(doc, "answer")
    assert answer["rc"] == {"1": 1}
    assert "connection closed by peer (code 4001, reason 'bye')" in json.dumps(doc["failures"])
    assert step_named(doc, "bye")["skipped"] == 1


def test_other_messages_are_skipped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three other messages before each answer: every read passes, 3 skipped messages each."""
    with threaded(noisy_echo(3)) as url:
        code, doc = both_ways(tmp_path, monkeypatch, scenario(url, ECHO_BLOCK, times=40))
    assert code == 0
    answer = step_named(doc, "answer")
    assert (answer["ok"], answer["skipped_messages"]) == (40, 120)


def test_a_server_that_hangs_times_the_read_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stops answering after 0.3 s: the read waiting then ends with -2 after its
    time-out, and the run fails."""
    text = scenario("{url}", ECHO_BLOCK, times=1_000_000, read_timeout="300ms")
    results = []
    for enabled in (True, False):  # a fresh server each way: its clock starts when it is made
        monkeypatch.setattr(rounds, "ENABLED", enabled)
        with threaded(echo_then_hang(0.3)) as url:
            (tmp_path / str(enabled)).mkdir()
            code, doc = run_scenario(tmp_path / str(enabled), text.replace("{url}", url))
        answer = step_named(doc, "answer")
        results.append((code, answer["rc"], answer["failures"], step_named(doc, "bye")["skipped"]))
        assert "time-out: no matching message within 0.3s" in json.dumps(doc["failures"])
        assert answer["ok"] > 0
    assert results[0] == results[1] == (1, {"-2": 1}, 1, 1)


def test_a_flood_of_other_messages_cannot_hold_the_read_past_its_time_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that only floods other messages: the read skips them and still ends at its
    time-out, saying how many it skipped."""
    with threaded(flood) as url:
        code, doc = both_ways(
            tmp_path, monkeypatch, scenario(url, ECHO_BLOCK, read_timeout="300ms"), counts_vary=True
        )
    answer = step_named(doc, "answer")
    assert code == 1 and answer["rc"] == {"-2": 1}
    assert "other messages skipped" in json.dumps(doc["failures"])


def test_a_reset_ends_the_waiting_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three answers, then a reset (RST) instead of the fourth: three rounds pass, the fourth
    read fails with the way the connection ended."""
    with threaded(echo_then_reset(3)) as url:
        code, doc = both_ways(tmp_path, monkeypatch, scenario(url, ECHO_BLOCK))
    answer = step_named(doc, "answer")
    assert code == 1 and (answer["ok"], answer["failures"]) == (3, 1)
    assert "rounds" not in json.dumps(doc["failures"])  # (a text of the step, not of the engine)


def test_a_peer_that_does_not_read_fails_the_write_after_the_drain_time_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes only, 256 KiB each, to a peer that never reads: once the send buffer is above its
    mark the write waits for it to drain (handed to the task), and fails with -1 at the read
    time-out."""
    block = "- write: {connection: main, binary: {size: 256KiB}}\n"
    with threaded(never_reads, rcvbuf=4096) as url:
        code, doc = both_ways(
            tmp_path, monkeypatch, scenario(url, block, times=1000, read_timeout="300ms"), counts_vary=True
        )
    write = step_named(doc, "write main")
    assert code == 1 and write["rc"] == {"-1": 1} and write["ok"] > 0
    assert "not sent" in json.dumps(doc["failures"]) and "not reading" in json.dumps(doc["failures"])


def test_the_end_of_a_load_run_cuts_the_waiting_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load run ends while every user waits for an answer that will not come: each read in
    flight is pending, not failed; the users' iterations are interrupted, none completed, so the
    run fails (exit 1) rather than pass on nothing."""
    load = "load:\n  vus: 3\n  duration: 1s\n  graceful_stop: 0s\n"
    text = scenario("{url}", ECHO_BLOCK, times=1_000_000, read_timeout="30s", load=load)
    views = []
    for enabled in (True, False):
        monkeypatch.setattr(rounds, "ENABLED", enabled)
        with threaded(echo_then_hang(0.5)) as url:
            (tmp_path / str(enabled)).mkdir()
            code, doc = run_scenario(tmp_path / str(enabled), text.replace("{url}", url))
        answer = step_named(doc, "answer")
        views.append((code, answer["pending"], answer["failures"], doc["iterations"]["interrupted"]))
        assert answer["ok"] > 0 and doc["interrupted"] is False
    assert views[0] == views[1] == (1, 3, 0, 3)


def test_captures_and_content_checks_inside_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node_ws_url: str
) -> None:
    """A read that captures a value the next round's write sends, and a read whose ``expect``
    fails in round 3: the same failure text, round and skipped steps both ways."""
    block = """\
- write: {connection: main, json: {seq: "{{ seq }}", last: "{{ last }}"}}
- name: answer
  read: {connection: main, match: {json: {seq: "{{ seq }}"}}}
  capture: {last: seq}
- name: checked
  write: {connection: main, text: "n{{ last }}"}
- name: check
  read: main
  expect: {regex: "^n[01]$"}
"""
    text = scenario(f"{node_ws_url}/echo", block, times=5).replace(
        "steps:\n  - open", "variables:\n  last: -1\nsteps:\n  - open", 1
    )
    code, doc = both_ways(tmp_path, monkeypatch, text)
    assert code == 1
    check = step_named(doc, "check")
    assert (check["ok"], check["failures"]) == (2, 1)
    assert "n2" in json.dumps(doc["failures"])
    assert step_named(doc, "bye")["skipped"] == 1


@pytest.mark.parametrize(
    "tail",
    [close_frame(4001, b"bye"), frame(0x1, b"ok \xff\xfe"), frame(0x3, b"x")],
    ids=["close_4001", "invalid_utf8", "reserved_opcode"],
)
def test_an_answer_and_a_close_in_one_packet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: bytes
) -> None:
    """The third answer arrives in one packet with a close frame (or a frame that breaks the
    protocol): the third read passes, and the fourth round fails at its write, the connection
    being closed, as the task sees it once the whole packet is read (found by a hostile review:
    the rounds used to send the fourth request before the close behind the answer was parsed)."""
    with threaded(answer_then_close(2, tail)) as url:
        code, doc = both_ways(tmp_path, monkeypatch, scenario(url, ECHO_BLOCK, times=5))
    answer, write = step_named(doc, "answer"), step_named(doc, "write main")
    assert code == 1
    assert (answer["ok"], answer["failures"], answer["skipped"]) == (3, 0, 1)
    assert (write["ok"], write["rc"]) == (3, {"-1": 1})
    assert "closed, cannot write" in json.dumps(doc["failures"])


def test_a_cut_just_before_an_answer_runs_no_step_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node_ws_url: str
) -> None:
    """The end of the run cancels a user's task just before an answer's callback: the task takes
    the cancellation only in a later callback, and nothing may run for the user in between. The
    read in flight is pending once, never also passed, and no write leaves after the cut (found
    by a hostile review: 1 run in 12 of 400 users counted 71 reads both ok and pending)."""
    tasks: dict[int, asyncio.Task[Any]] = {}
    wakes = [0]
    real_go, real_wake = rounds.Rounds.go, rounds.Rounds.set_result

    def go(self: rounds.Rounds) -> Any:
        tasks[id(self)] = asyncio.current_task()  # type: ignore[assignment]
        return real_go(self)

    def wake(self: rounds.Rounds, result: None) -> None:
        wakes[0] += 1
        if wakes[0] == 50:  # the cut lands in the loop turn of this answer, before its callback
            tasks[id(self)].cancel()
        real_wake(self, result)

    monkeypatch.setattr(rounds.Rounds, "go", go)
    monkeypatch.setattr(rounds.Rounds, "set_result", wake)
    load = "load:\n  vus: 1\n  duration: 2s\n  graceful_stop: 0s\n"
    code, doc = run_scenario(tmp_path, scenario(f"{node_ws_url}/echo", ECHO_BLOCK, times=1000, load=load))
    answer, write = step_named(doc, "answer"), step_named(doc, "write main")
    assert (write["count"], answer["ok"], answer["pending"]) == (50, 49, 1)
    assert doc["iterations"]["interrupted"] == 1 and code == 1


def test_a_read_that_starts_after_a_folding_write_does_not_count_the_fold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node_ws_url: str
) -> None:
    """Publish on one connection, read the broadcast on another (whose reads have no write of
    their own to start from): when the write's record folds the last second, the fold's time is
    not in the read's latency. Every write's record is made to fold, each fold 30 ms long."""
    from runner.results.recorders import RunRecorder
    from runner.steps import write

    real_send_now = write.send_now
    real_fold = RunRecorder.fold
    folds = []

    def send_now(step: Any, vu: Any) -> Any:
        outcome = real_send_now(step, vu)
        vu.ctx.recorder.next_second_ns = 0  # the write's record folds
        return outcome

    def fold(self: RunRecorder, *args: Any) -> None:
        folds.append(args)
        real_fold(self, *args)
        if args and len(folds) <= 60:
            time.sleep(0.03)

    used = []
    real_go = rounds.Rounds.go

    def go(self: rounds.Rounds) -> Any:
        used.append(1)
        return real_go(self)

    monkeypatch.setattr(write, "send_now", send_now)
    monkeypatch.setattr(RunRecorder, "fold", fold)
    monkeypatch.setattr(rounds.Rounds, "go", go)
    room = f"{node_ws_url}/room/fold-{time.monotonic_ns()}"
    text = f"""\
name: publish and read the broadcast
connections:
  pub: {{url: "{room}", timeout: 5s}}
  sub: {{url: "{room}", timeout: 5s}}
steps:
  - open: pub
  - open: sub
  - repeat:
      times: 20
      steps:
        - write: {{connection: pub, text: news}}
        - name: broadcast
          read: {{connection: sub, timeout: 5s}}
  - close: pub
  - close: sub
"""
    code, doc = run_scenario(tmp_path, text)
    assert code == 0, doc["failures"]
    assert used, "the block did not run as callback rounds"
    assert len(folds) >= 20
    latency = step_named(doc, "broadcast")["latency_ms"]
    assert latency["p50"] < 20, latency  # (each fold is 30 ms)
