"""Fan-out latency (issue 16 §6-7): a read with ``latency_from`` records the delivery latency, from
the send time stamped in the message to its parse here; the embedded server's ``/room/NAME``
broadcasts (and ``?tick=RATE`` publishes stamped messages itself). Against our room and ticker,
and against the Node ``ws`` library's broadcast, a server we did not write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main

TICKER = """\
name: market data
target: embedded
connections:
  feed: {url: "/room/market?tick=100&size=64", timeout: 5s}
steps:
  - open: feed
  - repeat:
      times: 20
      steps:
        - read:
            connection: feed
            latency_from: {json: sent_at, unit: ms}
  - close: feed
load: {vus: 50, iterations: 1}
thresholds:
  - read feed.delivery_p99 < 250ms
"""


def _run(tmp_path: Path, text: str, *args: str, name: str = "s") -> tuple[int, dict, str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    out = tmp_path / f"{name}.json"
    html = tmp_path / f"{name}.html"
    code = main(["run", str(path), "--json", str(out), "--html", str(html), "--report-dir", "", *args])
    return code, json.loads(out.read_text()), html.read_text()


def test_subscribers_of_the_ticker_get_delivery_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """50 subscribers of a room publishing 100 stamped messages a second: every read has a
    delivery latency (stamp to parse), in the JSON, the console, the HTML, and a threshold on
    its p99 is judged; the read's own latency (its wait for the next tick) is another figure."""
    code, doc, html = _run(tmp_path, TICKER)
    out = capsys.readouterr().out
    assert code == 0, (doc["error"], doc["problems"], out)
    read = next(s for s in doc["steps"] if s["kind"] == "read")
    assert read["count"] == 1000 and read["ok"] == 1000
    delivery = read["delivery_ms"]
    assert 0 < delivery["p50"] <= delivery["p99"] <= delivery["max"] < 250, delivery
    assert read["delivery_ahead"] == 0
    assert delivery["p50"] < read["latency_ms"]["p50"]  # the wait for a tick (~5 ms mean) is not delivery
    verdict = next(t for t in doc["thresholds"] if t["expression"].startswith("read feed.delivery_p99"))
    assert verdict["passed"] and verdict["value"] * 1000 == pytest.approx(delivery["p99"], rel=0.01)
    assert "read feed: delivery p50" in out and "Delivery latency of stamped messages" in html
    open_ = next(s for s in doc["steps"] if s["kind"] == "open")
    assert "delivery_ms" not in open_  # only reads with latency_from carry it


BROADCAST = """\
name: chat fan-out
connections:
  room: {url: "/room/chat", timeout: 5s}
steps:
  - open: room
  - sleep: 1s                     # every member has joined before anyone speaks
  - write: {connection: room, json: {from: "{{ vu }}", sent_at: "{{ now_us() }}"}}
  - repeat:
      times: 10                   # every member's message, ours included
      steps:
        - read:
            connection: room
            latency_from: {json: sent_at, unit: us}
  - close: room
load: {vus: 10, iterations: 1}
"""


def test_delivery_over_the_node_ws_broadcast(tmp_path: Path, node_ws_url: str) -> None:
    """Ten members of a room on the Node ``ws`` server each publish one message stamped with
    ``now_us()`` and read all ten: 100 deliveries, each timed from its publisher's stamp."""
    code, doc, _ = _run(tmp_path, BROADCAST, "--target", node_ws_url, "--workers", "1")
    assert code == 0, (doc["error"], doc["problems"])
    read = next(s for s in doc["steps"] if s["kind"] == "read")
    assert read["count"] == 100 and read["delivery_ahead"] == 0
    assert 0 < read["delivery_ms"]["p50"] < 100 and read["delivery_ms"]["max"] < 1000, read["delivery_ms"]


def test_the_same_over_two_workers_merges_every_delivery(tmp_path: Path, node_ws_url: str) -> None:
    """Over two worker processes the deliveries of both add up: 100 samples in one histogram."""
    code, doc, _ = _run(tmp_path, BROADCAST, "--target", node_ws_url, "--workers", "2")
    assert code == 0, (doc["error"], doc["problems"])
    read = next(s for s in doc["steps"] if s["kind"] == "read")
    assert read["count"] == 100 and read["delivery_ms"]["max"] < 1000


STAMPED = """\
name: stamps
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - write: {connection: main, json: {sent_at: SENT}}
  - read: {connection: main, latency_from: {json: sent_at, unit: ms}}
  - close: main
"""


def test_a_stamp_from_the_future_is_counted_and_fails_the_run(tmp_path: Path) -> None:
    """A sender's clock ahead of ours (a stamp in 2286): recorded as 0, counted as ahead, and
    the run fails: delivery figures of 0 would pass any bound."""
    code, doc, _ = _run(tmp_path, STAMPED.replace("SENT", "9999999999999"))
    read = next(s for s in doc["steps"] if s["kind"] == "read")
    assert read["delivery_ahead"] == 1 and read["delivery_ms"]["max"] == 0
    assert code == 1 and doc["problems"] == [
        "'read main' (line 7): 1 of 1 messages were stamped later than they arrived (their delivery "
        "recorded as 0): the sender's clock is ahead of this machine's, or latency_from's unit is "
        "wrong; its delivery figures are not latencies"
    ]


def test_a_stamp_in_the_wrong_unit_fails_the_run(tmp_path: Path) -> None:
    """Microseconds read as milliseconds: every stamp is decades ahead, every delivery 0; a
    'delivery_p99 < 100ms' threshold used to pass with exit 0 over a server 500 ms slow."""
    text = STAMPED.replace("SENT", '"{{ now_us() }}"').replace("url: /echo", "url: /slow?delay=0.2")
    text += "thresholds:\n  - read main.delivery_p99 < 100ms\n"
    code, doc, _ = _run(tmp_path, text)
    assert code == 1 and any("stamped later than they arrived" in p for p in doc["problems"]), doc


@pytest.mark.parametrize("stamp", ["1e999", '"inf"', '"-Infinity"', "1e300"])
def test_a_stamp_beyond_any_clock_is_no_send_time(tmp_path: Path, stamp: str) -> None:
    """Infinite or overflowing stamps fail the read as missing ones do, not as a wsload bug."""
    text = STAMPED.replace("SENT", stamp).replace("unit: ms", "unit: s")
    code, doc, _ = _run(tmp_path, text)
    read = next(s for s in doc["steps"] if s["kind"] == "read")
    assert code == 1 and read["internal_errors"] == 0, read
    assert doc["failures"][0]["message"].startswith("latency_from: no send time at 'sent_at'")


def test_a_message_without_its_stamp_fails_the_read(tmp_path: Path) -> None:
    code, doc, _ = _run(tmp_path, STAMPED.replace("sent_at: SENT", "other: 1"))
    assert code == 1
    read = next(s for s in doc["steps"] if s["kind"] == "read")
    assert read["failures"] == 1 and "delivery_ms" not in read
    assert doc["failures"][0]["message"] == (
        "latency_from: no send time at 'sent_at' (a number of ms since the epoch)"
    )


@pytest.mark.parametrize(
    ("latency_from", "message"),
    [
        (
            "{json: 'sent_at[', unit: ms}",
            "s.yaml:7:51: steps[2].read.latency_from.json: invalid JMESPath 'sent_at[': Incomplete "
            "expression",
        ),
        (
            "{json: sent_at, unit: minutes}",
            "s.yaml:7:66: steps[2].read.latency_from.unit: unknown value 'minutes' (one of: s, ms, us, ns)",
        ),
        ("{jsn: sent_at}", "s.yaml:7:45: steps[2].read.latency_from.jsn: unknown key 'jsn'"),
    ],
)
def test_latency_from_mistakes_are_refused_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], latency_from: str, message: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(STAMPED.replace("{json: sent_at, unit: ms}", latency_from))
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert message in captured.out + captured.err, captured


REACH = BROADCAST.replace(
    "latency_from: {json: sent_at, unit: us}", "latency_from: {json: sent_at, unit: us, id: from}"
)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_reach_counts_every_receiver_of_every_message(tmp_path: Path, node_ws_url: str, workers: str) -> None:
    """Ten members of a Node ``ws`` room each publish one message with its id (``from``): each of
    the ten messages reached all ten readers, over one worker or two (merged per id), and the
    thresholds on the fewest receivers and on the time until the last are judged on it."""
    text = REACH + "thresholds:\n  - read room.reach_min >= 10\n  - read room.reach_time_p99 < 1s\n"
    code, doc, html = _run(tmp_path, text, "--target", node_ws_url, "--workers", workers)
    assert code == 0, (doc["error"], doc["problems"])
    reach = next(s for s in doc["steps"] if s["kind"] == "read")["reach"]
    assert reach["messages"] == 10 and reach["receivers_min"] == reach["receivers_max"] == 10, reach
    assert reach["overflow"] == 0 and 0 < reach["time_ms"]["max"] < 1000
    assert all(t["passed"] for t in doc["thresholds"])
    assert "Reach of messages" in html


def test_a_reach_short_of_the_bound_fails_the_run(tmp_path: Path, node_ws_url: str) -> None:
    text = REACH + "thresholds:\n  - read room.reach_min >= 11\n"
    code, doc, _ = _run(tmp_path, text, "--target", node_ws_url, "--workers", "1")
    verdict = doc["thresholds"][0]
    assert code == 1 and not verdict["passed"] and verdict["value"] == 10


def test_a_message_without_its_id_fails_the_read(tmp_path: Path) -> None:
    text = STAMPED.replace("SENT", '"{{ now_ms() }}"').replace("unit: ms", "unit: ms, id: seq")
    code, doc, _ = _run(tmp_path, text)
    assert code == 1
    assert doc["failures"][0]["message"].startswith("latency_from: no message id at 'seq'")


def test_reach_ids_beyond_the_cap_are_counted_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the per-process cap of ids, a delivery is counted in ``overflow`` (the figures leave
    it out and say so); a worker's serialised reach merges exactly into another's."""
    from runner.results import recorders
    from runner.results.result import StepResult

    monkeypatch.setattr(recorders, "MAX_REACH_IDS", 3)
    a, b = recorders.StepRecorder("r", "read"), recorders.StepRecorder("r", "read")
    for i in range(5):
        a.record_delivery(1_000_000 * (i + 1), str(i))
    b.record_delivery(9_000_000, "0")
    b.merge(a.serialize())
    reach = StepResult.of(b).reach
    assert reach is not None and reach.messages == 3 and reach.overflow == 2
    assert (reach.receivers_min, reach.receivers_max) == (1, 2) and reach.time_ms is not None
    assert reach.time_ms.max == 9.0


def test_a_receive_counts_reach_as_a_read_does(tmp_path: Path, node_ws_url: str) -> None:
    """The same room read by one streaming ``receive`` of ten messages per member: the same
    reach, ten messages each reaching all ten members."""
    text = REACH.replace(
        """  - repeat:
      times: 10                   # every member's message, ours included
      steps:
        - read:
            connection: room
            latency_from: {json: sent_at, unit: us, id: from}""",
        """  - receive:
      connection: room
      count: 10
      latency_from: {json: sent_at, unit: us, id: from}""",
    )
    assert "receive:" in text
    code, doc, _ = _run(
        tmp_path, text + "thresholds:\n  - receive.reach_min >= 10\n", "--target", node_ws_url
    )
    assert code == 0, (doc["error"], doc["problems"])
    step = next(s for s in doc["steps"] if s["kind"] == "receive")
    assert step["received"] == 100 and step["reach"]["receivers_min"] == step["reach"]["receivers_max"] == 10
