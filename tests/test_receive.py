"""Streaming reads (issue 16 §5): ``receive: {connection, for, count, timeout, match, latency_from}``
takes messages for a while or until a count, counting each one (``received``) in the second it
arrived. Against the embedded server's ticker room, the Node ``ws`` broadcast room, and hostile
servers (tests/hostile_servers.py) that close mid-stream, go silent or flood."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import scaled
from hdrh.histogram import HdrHistogram
from hostile_servers import Behaviour, HostileServer, close_frame, flood, frame, upgrade_response

from runner.cli import main


def _run(tmp_path: Path, text: str, *args: str, name: str = "s") -> tuple[int, dict, str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    out = tmp_path / f"{name}.json"
    html = tmp_path / f"{name}.html"
    code = main(["run", str(path), "--json", str(out), "--html", str(html), "--report-dir", "", *args])
    return code, json.loads(out.read_text()), html.read_text()


def _step(doc: dict, name: str) -> dict:
    return next(s for s in doc["steps"] if s["name"] == name)


def _threshold(doc: dict, prefix: str) -> dict:
    return next(t for t in doc["thresholds"] if t["expression"].startswith(prefix))


def _samples(encoded: str) -> int:
    hist = HdrHistogram(1, 3600 * 1_000_000, 3)
    hist.decode_and_add(encoded.encode("ascii"))
    return int(hist.get_total_count())


@contextlib.contextmanager
def hostile(behaviour: Behaviour) -> Iterator[str]:
    """A hostile server in a thread of its own (the CLI runs its own loop): yields its URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        stop = box["stop"] = asyncio.Event()
        async with HostileServer(behaviour) as server:
            box["url"] = server.url
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(5)
        yield str(box["url"])
    finally:
        stop = box["stop"]
        assert isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()


def _stream_then(count: int, end: bytes) -> Behaviour:
    """Upgrades, sends ``count`` stamped JSON messages, then ``end`` (a close frame, or nothing),
    and stays connected."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        stamp = time.time_ns() / 1e6
        body = b"".join(frame(0x1, json.dumps({"seq": i, "sent_at": stamp}).encode()) for i in range(count))
        writer.write(upgrade_response(key) + body + end)
        await writer.drain()
        await asyncio.Event().wait()

    return behaviour


def _scenario(url: str, body: str, extra: str = "", *, target: str = "") -> str:
    return (
        f'name: stream\n{target}connections:\n  feed: {{url: "{url}", timeout: 5s}}\n'
        f"steps:\n  - open: feed\n  - name: stream\n    receive: {body}\n  - close: feed\n{extra}"
    )


TICKER = "/room/{room}?tick={rate}&size=64"


def test_count_mode_takes_that_many_from_the_ticker_with_a_delivery_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``count: 100`` from a room ticking 200 stamped messages a second: 100 messages taken, one
    delivery sample each, the step's latency the half second the receive lasted; the console and
    the HTML show the count."""
    text = _scenario(
        TICKER.format(room="count", rate=200),
        "{connection: feed, count: 100, latency_from: {json: sent_at, unit: ms}}",
        "thresholds:\n  - stream.received == 100\n  - messages.count == 100\n"
        "  - stream.delivery_p99 < 250ms\n",
        target="target: embedded\n",
    )
    prom = tmp_path / "wsload.prom"
    code, doc, html = _run(tmp_path, text, "--prometheus-textfile", str(prom))
    out = capsys.readouterr().out
    assert code == 0, (doc["error"], doc["problems"], out)
    stream = _step(doc, "stream")
    assert (stream["count"], stream["ok"], stream["received"], stream["skipped_messages"]) == (1, 1, 100, 0)
    assert 'wsload_step_received_messages{scenario="stream",step="stream"} 100.0' in prom.read_text()
    assert _samples(stream["delivery_histogram"]) == 100 and stream["delivery_ahead"] == 0
    assert 0 < stream["delivery_ms"]["max"] < 250
    assert 300 < stream["latency_ms"]["max"] < 3000  # 100 ticks at 200/s: about 500 ms
    assert all(t["passed"] for t in doc["thresholds"]), doc["thresholds"]
    assert "recv" in out and "stream: received 100 messages" in out
    assert "stream: received 100 messages" in html
    assert "received" not in _step(doc, "open feed")  # only receive steps carry it


def test_for_mode_counts_each_message_in_the_second_it_arrived(tmp_path: Path) -> None:
    """``for: 2s`` on a 100/s ticker: rc 0, about 200 messages, spread over the seconds of the
    run (not all in the second the step ended); ``received`` and ``received_per_s`` thresholds
    are judged on them, and one set too high is lost with exit 1."""
    text = _scenario(
        TICKER.format(room="window", rate=100),
        "{connection: feed, for: 2s}",
        "thresholds:\n  - stream.received >= 100\n  - stream.received_per_s > 40\n"
        "  - receive.received < 400\n  - stream.received >= 5000\n",
        target="target: embedded\n",
    )
    code, doc, _ = _run(tmp_path, text)
    stream = _step(doc, "stream")
    assert stream["rc"] == {} and stream["ok"] == 1, stream["errors"]
    assert 100 <= stream["received"] <= 300, stream["received"]
    assert 1900 <= stream["latency_ms"]["max"] < 3000  # a for-receive lasts its window
    per_second = [t["messages"] for t in doc["timeseries"]]
    assert sum(per_second) == stream["received"]
    assert sum(1 for n in per_second if n >= 30) >= 2, per_second  # a rate, not one lump at the end
    verdicts = {t["expression"]: t["passed"] for t in doc["thresholds"]}
    assert verdicts == {
        "stream.received >= 100": True,
        "stream.received_per_s > 40": True,
        "receive.received < 400": True,
        "stream.received >= 5000": False,
    }
    assert _threshold(doc, "stream.received_per_s")["value"] == pytest.approx(
        stream["received"] / doc["duration_s"], rel=0.01
    )
    assert code == 1 and doc["steps"] and doc["passed"] is False


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{connection: feed, count: 1000, for: 500ms}", "of 1000 messages within 0.5s"),
        ("{connection: feed, count: 1000, timeout: 500ms}", "of 1000 messages within 0.5s"),
    ],
    ids=["for_and_count", "count_and_timeout"],
)
def test_too_few_in_time_is_minus_two_with_how_many_came(tmp_path: Path, body: str, expected: str) -> None:
    """A count not reached in the window (``for``, or ``timeout`` for a count alone): rc -2 with
    how many of how many came; those that came still count."""
    code, doc, _ = _run(
        tmp_path, _scenario(TICKER.format(room="few", rate=100), body, target="target: embedded\n")
    )
    stream = _step(doc, "stream")
    assert code == 1 and stream["rc"] == {"-2": 1}
    message = stream["errors"][0]["message"]
    assert message.startswith("receive returned rc -2, expected rc 0: time-out: ") and message.endswith(
        expected
    )
    taken = int(message.split("time-out: ")[1].split(" of ")[0])
    assert stream["received"] == taken and 20 <= taken <= 100, message


def test_silent_server(tmp_path: Path) -> None:
    """Nothing comes on an echo connection nobody writes to: a count times out with 0 of 1; a
    window ends with rc 0 and nothing received, which a ``received`` threshold then loses."""
    code, doc, _ = _run(
        tmp_path, _scenario("/echo", "{connection: feed, count: 1, timeout: 300ms}"), "--target", "embedded"
    )
    stream = _step(doc, "stream")
    assert code == 1 and stream["rc"] == {"-2": 1}
    assert stream["errors"][0]["message"].endswith("time-out: 0 of 1 messages within 0.3s")
    text = _scenario("/echo", "{connection: feed, for: 300ms}", "thresholds:\n  - stream.received >= 1\n")
    code, doc, _ = _run(tmp_path, text, "--target", "embedded", name="window")
    stream = _step(doc, "stream")
    assert (stream["ok"], stream["received"]) == (1, 0) and code == 1
    assert _threshold(doc, "stream.received")["message"].startswith("stream.received was 0, limit >= 1")


def test_peer_closing_mid_stream_is_rc_1_and_the_messages_before_count(tmp_path: Path) -> None:
    """Five messages, then a close frame 4000 "bye": rc 1 with the code and reason and how many
    came first; the five count in ``received`` (and their deliveries are recorded)."""
    with hostile(_stream_then(5, close_frame(4000, b"bye"))) as url:
        body = "{connection: feed, count: 100, timeout: 3s, latency_from: {json: sent_at}}"
        start = time.monotonic()
        code, doc, _ = _run(tmp_path, _scenario(url, body))
        assert time.monotonic() - start < scaled(3)
    stream = _step(doc, "stream")
    assert code == 1 and stream["rc"] == {"1": 1}
    assert stream["errors"][0]["message"] == (
        "receive returned rc 1, expected rc 0: connection closed by peer (code 4000, reason 'bye') "
        "after 5 messages"
    )
    assert stream["received"] == 5 and _samples(stream["delivery_histogram"]) == 5
    assert stream["closes"] == {"4000 bye": 1}


def test_a_server_going_silent_mid_stream_is_minus_two_with_what_came(tmp_path: Path) -> None:
    """Five messages, then silence: a count of ten times out at its ``timeout`` with 5 of 10,
    and the five count."""
    with hostile(_stream_then(5, b"")) as url:
        start = time.monotonic()
        code, doc, _ = _run(tmp_path, _scenario(url, "{connection: feed, count: 10, timeout: 300ms}"))
        assert time.monotonic() - start < scaled(3)
    stream = _step(doc, "stream")
    assert code == 1 and stream["rc"] == {"-2": 1} and stream["received"] == 5
    assert stream["errors"][0]["message"].endswith("time-out: 5 of 10 messages within 0.3s")


def test_a_flood_of_non_matching_messages_still_times_out(tmp_path: Path) -> None:
    """A server sending small messages as fast as it can, none matching: the receive ends at its
    ``timeout`` all the same (the buffer never empties), counting what it skipped."""
    with hostile(flood) as url:
        body = "{connection: feed, count: 1, timeout: 300ms, match: {text: never}}"
        start = time.monotonic()
        code, doc, _ = _run(tmp_path, _scenario(url, body, "defaults: {read_timeout: 1s}\n"))
        assert time.monotonic() - start < scaled(3)
    stream = _step(doc, "stream")
    assert code == 1 and stream["rc"] == {"-2": 1} and stream["received"] == 0
    assert stream["skipped_messages"] > 100
    message = stream["errors"][0]["message"]
    assert "time-out: 0 of 1 matching messages within 0.3s, " in message
    assert message.endswith(f", {stream['skipped_messages']} other messages skipped")


ROOM = """\
name: trades
connections:
  pub: {url: "/room/trades", timeout: 5s}
  sub: {url: "/room/trades", timeout: 5s}
steps:
  - open: sub
  - open: pub
  - repeat:
      times: 5
      index: i
      steps:
        - write: {connection: pub, json: {type: noise, i: "{{ i }}"}}
        - write: {connection: pub, json: {type: noise, i: "{{ i }}"}}
        - write: {connection: pub, json: {type: trade, price: PRICE, i: "{{ i }}"}}
  - name: trades
    receive:
      connection: sub
      count: 5
      timeout: 3s
      match: {json: {type: trade}}
    expect: {json: {price: 10}}
  - close: pub
  - close: sub
"""


def test_match_skips_others_on_the_node_broadcast_room(tmp_path: Path, node_ws_url: str) -> None:
    """On the Node ``ws`` server's room, another member publishes ten noise messages and five
    trades: the receive takes the five trades and counts the noise as skipped."""
    code, doc, _ = _run(tmp_path, ROOM.replace("PRICE", "10"), "--target", node_ws_url)
    assert code == 0, (doc["error"], doc["problems"], doc["failures"])
    trades = _step(doc, "trades")
    assert (trades["ok"], trades["received"], trades["skipped_messages"]) == (1, 5, 10)


def test_a_message_failing_expect_fails_the_step_at_once(tmp_path: Path) -> None:
    """Every message taken is checked: the first trade at the wrong price fails the step at
    once, quoting it; none was counted as received."""
    code, doc, _ = _run(tmp_path, ROOM.replace("PRICE", "11"), "--target", "embedded")
    trades = _step(doc, "trades")
    assert code == 1 and trades["failures"] == 1 and trades["received"] == 0
    failure = doc["failures"][0]
    assert failure["step"] == "trades" and '"price":11' in failure["actual"], failure
    assert trades["latency_ms"]["max"] < 1000  # at once, not at the time-out


def test_a_message_without_a_stamp_fails_as_a_read_does(tmp_path: Path) -> None:
    """``latency_from`` on a message without the stamp fails the step, naming the path."""
    code, doc, _ = _run(
        tmp_path,
        ROOM.replace("PRICE", "10").replace(
            "      timeout: 3s\n", "      timeout: 3s\n      latency_from: {json: at}\n"
        ),
        "--target",
        "embedded",
    )
    trades = _step(doc, "trades")
    assert code == 1 and trades["failures"] == 1
    assert trades["errors"][0]["message"].startswith("latency_from: no send time at 'at'")


LOAD = """\
name: subscribers
target: embedded
connections:
  feed: {url: "/room/load?tick=200&size=16", timeout: 5s}
steps:
  - open: feed
  - name: stream
    receive: {connection: feed, count: 50, timeout: 5s, latency_from: {json: sent_at}}
  - close: feed
load: {vus: 4, iterations: 2}
thresholds:
  - stream.received == 400
  - messages.count == 400
"""


def test_workers_add_up_every_message_exactly(tmp_path: Path) -> None:
    """Four users over two worker processes, two iterations each of 50 messages: 400 received,
    400 delivery samples, 400 messages run-wide, 8 executions."""
    code, doc, _ = _run(tmp_path, LOAD, "--workers", "2")
    assert code == 0, (doc["error"], doc["problems"], doc["thresholds"])
    stream = _step(doc, "stream")
    assert (stream["count"], stream["received"]) == (8, 400)
    assert _samples(stream["delivery_histogram"]) == 400
    assert sum(t["messages"] for t in doc["timeseries"]) == 400


HELD = """\
name: held subscribers
connections:
  feed: {url: "URL", timeout: 5s}
steps:
  - open: feed
  - name: stream
    receive: {connection: feed, for: 30s}
  - close: feed
load: {vus: 2, duration: 1500ms, hold: true, graceful_stop: 0s}
"""


def test_a_long_receive_cut_by_the_end_while_messages_flow_is_not_stalled(tmp_path: Path) -> None:
    """Held users on a ``for: 30s`` receive, a 1.5 s run: every receive is cut (pending) while
    the ticker still flows; that is no stall and no "never completed", and what came counts."""
    text = HELD.replace("URL", TICKER.format(room="held", rate=50))
    code, doc, _ = _run(tmp_path, "target: embedded\n" + text)
    stream = _step(doc, "stream")
    assert code == 0, (doc["error"], doc["problems"])
    assert stream["pending"] == 2 and stream["count"] == 0 and stream["received"] >= 60
    assert stream["pending_max_ms"] < 500  # the wait since the last message, not since the start


def test_a_receive_whose_stream_stops_is_stalled(tmp_path: Path) -> None:
    """The same on a server that sends five messages and goes silent: the cut receives had gone
    without a message for most of the run, far beyond the longest wait before: stalled."""
    with hostile(_stream_then(5, b"")) as url:
        code, doc, _ = _run(tmp_path, HELD.replace("URL", url))
    stream = _step(doc, "stream")
    assert code == 1 and stream["received"] == 10 and stream["pending"] == 2
    assert any("'stream' (line 6) stalled: 2 still receiving" in p for p in doc["problems"]), doc["problems"]


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("{connection: feed, count: 5, timout: 1s}", 7, "unknown key 'timout', did you mean 'timeout'?"),
        (
            "{connection: feed}",
            7,
            "a receive needs 'for' (how long to take messages), 'count' (how many), or both",
        ),
        ("{connection: feed, for: 1s, timeout: 2s}", 7, "timeout: a receive with 'for' ends at 'for'"),
        ("{connection: feed, count: 2}\n    capture: {x: seq}", 8, "unknown key 'capture'"),
    ],
    ids=["misspelled", "neither_for_nor_count", "timeout_with_for", "capture"],
)
def test_validate_points_at_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, line: int, message: str
) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(
        f"name: v\ntarget: embedded\nconnections:\n  feed: {{url: /echo}}\nsteps:\n  - open: feed\n"
        f"  - receive: {body}\n  - close: feed\n"
    )
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert f"{path}:{line}:" in said and message in said, said
