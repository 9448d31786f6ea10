"""The hot-path shortcuts give exactly what the general paths give: JSON templates spliced from
a precompiled skeleton, the flat JSON match, the recorder's shortcut, ``Message.json``; and an
idle connection keeps only what it needs (row 2: memory per idle connection). Client frames
encoded without websockets are tested in tests/test_frames.py."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from conftest import scaled
from hostile_servers import HostileServer, accept_key

from runner.checks.expect import Message, json_subset_problem
from runner.client import ConnectOptions, WebSocketClient
from runner.results.recorders import StepRecorder, TimeSeries
from runner.scenario.templates import JsonTemplate, TemplateError
from runner.server import EmbeddedServer

Arun = Callable[[Callable[[], Awaitable[Any]]], Any]


def _tree_dumps(template: JsonTemplate, ctx: dict[str, object]) -> str:
    """The general path: build the value, then ``json.dumps`` it whole."""
    return json.dumps(template.render(ctx), separators=(",", ":"), default=str)


_CTX: dict[str, object] = {
    "iteration": 7,
    "vu": 3,
    "name": 'zoë \u2603 "quoted" \\ back',
    "flag": True,
    "nothing": None,
    "ratio": 0.25,
    "big": 10**30,
    "items": [1, "two", {"three": 3.0}],
    "obj": {"k": [None, False], "ü": "v"},
    "when": __import__("datetime").date(2026, 11, 25),
}

_SHAPES: list[object] = [
    {"seq": "{{ iteration }}", "vu": "{{ vu }}", "payload": "xxxx"},
    {"seq": "{{ iteration }}"},
    ["{{ iteration }}", "static", 1, None, ["{{ name }}", {"deep": "{{ obj }}"}]],
    {"a": {"b": {"c": ["{{ items }}", "{{ flag }}", "{{ nothing }}"]}}, "z": [1.5, True]},
    {"text": "seq {{ iteration }} of {{ vu }}", "uni": "\u00e9\u2603", "n": "{{ name }}"},
    {"r": "{{ ratio }}", "big": "{{ big }}", "obj": "{{ obj }}", "d": "{{ when }}"},
    {"static_expr": "{{ 'lit' }}", "num": "{{ 42 }}", "s": "{{ iteration }}"},
    {"1": "{{ iteration }}", "": "{{ vu }}", "\u2603": ["{{ name }}"]},
    "{{ iteration }}",
    ["{{ obj }}"],
    {"seq": "{{ iteration }}", "trap": "\x00wsload-leaf-0\x00"},
]


@pytest.mark.parametrize("shape", _SHAPES, ids=range(len(_SHAPES)))
def test_spliced_json_equals_the_tree_dump(shape: object) -> None:
    """``dumps`` spells exactly what building the value and dumping it whole spells."""
    template = JsonTemplate(shape)
    assert not template.is_static
    out = template.dumps(_CTX)
    assert out == _tree_dumps(template, _CTX)
    json.loads(out)


def test_spliced_json_is_used_for_the_bench_shape() -> None:
    """The commonest shape (a few scalar leaves) takes the splice, not the tree path."""
    template = JsonTemplate({"seq": "{{ iteration }}", "vu": "{{ vu }}", "payload": "x"})
    assert template._renders
    assert template.dumps({"iteration": 1, "vu": 2}) == '{"seq":1,"vu":2,"payload":"x"}'


def test_spliced_json_reports_a_missing_variable_like_the_tree_path() -> None:
    """A missing name raises the same ``TemplateError`` on both paths."""
    template = JsonTemplate({"seq": "{{ missing }}"})
    with pytest.raises(TemplateError, match="unknown variable 'missing'"):
        template.dumps({})


@pytest.mark.parametrize(
    ("expected", "actual", "problem"),
    [
        ({"seq": 1}, {"seq": 1, "x": 2}, None),
        ({"seq": 1}, {"seq": 1.0}, None),
        ({"seq": 1}, {"seq": True}, "$.seq: expected 1, got true"),
        ({"seq": True}, {"seq": 1}, "$.seq: expected true, got 1"),
        ({"seq": "1"}, {"seq": 1}, "$.seq: expected 1, got 1"),
        ({"seq": 2}, {"seq": 1}, "$.seq: expected 2, got 1"),
        ({"a": 1, "seq": 2}, {"seq": 2}, "$.a: missing"),
        ({"a": {"b": [1, "x"]}}, {"a": {"b": [1, "y"]}}, "$.a.b[1]: expected x, got y"),
    ],
)
def test_json_subset_fast_path_keeps_the_general_answers(
    expected: object, actual: object, problem: str | None
) -> None:
    """The dict shortcut gives the same verdicts and texts (``1 == 1.0``, ``True != 1``)."""
    assert json_subset_problem(expected, actual) == problem


def test_record_ok_counts_what_record_counts() -> None:
    """``record_ok``/``step_ok`` leave the same counts, latencies and series as the general calls."""
    fast, slow = StepRecorder("s", "read"), StepRecorder("s", "read")
    fast_ts, slow_ts = TimeSeries(), TimeSeries()
    for i, (latency, skipped) in enumerate([(1000, 0), (None, 2), (5_000_000, 0)]):
        fast.record_ok(latency, skipped)
        slow.record(ok=True, rc=0, rc_is_success=True, latency_ns=latency, skipped_messages=skipped)
        fast_ts.step_ok(i // 2, latency, i != 1)
        slow_ts.step(i // 2, True, None, latency, i != 1)
    assert (fast.count, fast.ok, fast.failures, fast.rc, fast.errors, fast.skipped_messages) == (
        slow.count,
        slow.ok,
        slow.failures,
        slow.rc,
        slow.errors,
        slow.skipped_messages,
    )
    assert fast.latency.summary() == slow.latency.summary()
    assert fast_ts.serialize() == slow_ts.serialize()


@pytest.mark.parametrize(
    "data",
    [
        '{"seq":1,"x":[1,2.5,null,true]}',
        ' {"a":1} ',
        '{"a":1}\n',
        "[1]",
        '"s"',
        "12",
        "nan",
        "NaN",
        '{"a":1}x',
        "",
        "  ",
        '{"a":',
        b'{"b":2}',
        '{"u":"\\u00e9"}',
        "1 2",
    ],
)
def test_message_json_parses_like_json_loads(data: str | bytes) -> None:
    """``Message.json`` gives ``json.loads``'s value, or a ValueError where it raises."""
    try:
        want: object = json.loads(data)
    except ValueError:
        with pytest.raises(ValueError):
            Message(data).json()
        return
    got = Message(data).json()
    assert got == want or (got != got and want != want)  # NaN


# --- idle connections -------------------------------------------------------------------------


def test_idle_connection_keeps_no_queue_futures_or_http_answer(arun: Arun) -> None:
    """After the open: no message queue, no handshake or lost future, no ping table, and
    websockets' parser no longer runs inside the generator that holds the 101 answer; reads,
    pings and the close still work (and create what they need)."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo", ConnectOptions(timeout_s=scaled(5)))
            conn = client.connection(sock)
            assert conn is not None and conn.holding() == ()
            assert not hasattr(conn, "__dict__")
            assert client.queued(sock) == (0, 0)
            assert client.write(sock, "hi") == 2
            assert (await client.read(sock, scaled(5))).data == "hi"
            assert (await client.ping(sock, scaled(5))).rc == 0
            assert conn.holding() == ("message queue", "ping table")
            assert await client.close(sock, scaled(5)) == 0
            assert conn.lost

    arun(body)


def test_idle_connection_memory_is_bounded(arun: Arun) -> None:
    """An idle open connection costs under 4 KiB of Python memory in the client (transport,
    websockets' protocol core and ours; it was 6.4 KiB before the idle trimming)."""
    n = 200

    async def body() -> float:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            url = server.url + "/echo"
            options = ConnectOptions(timeout_s=scaled(5))
            for _ in range(5):  # warm up: caches, the loop's own structures
                assert await client.close(await client.open(url, options)) == 0
            gc.collect()
            tracemalloc.start(30)
            try:
                before = tracemalloc.take_snapshot()
                socks = [await client.open(url, options) for _ in range(n)]
                await asyncio.sleep(0.1)
                gc.collect()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            assert all(s >= 0 for s in socks)
            await client.aclose()
        # what was allocated with client code on the stack (the server runs in this process too)
        mine = [tracemalloc.Filter(True, "*/runner/client/*", all_frames=True)]
        grown = after.filter_traces(mine).compare_to(before.filter_traces(mine), "filename")
        return sum(d.size_diff for d in grown) / n

    per_connection = arun(body)
    assert per_connection < 4096, per_connection


def test_connections_to_one_url_share_its_parsed_form(arun: Arun) -> None:
    """A URL is parsed once per client and shared by its connections; a bad URL fails every
    time; past ``uri_cache_size`` distinct URLs, URLs are parsed per open and still work."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient(uri_cache_size=2)
            options = ConnectOptions(timeout_s=scaled(5))
            urls = [server.url + path for path in ("/echo", "/echo", "/echo?a=1", "/echo?b=2", "/echo?b=2")]
            socks = [await client.open(url, options) for url in urls]
            assert all(s >= 0 for s in socks), client.last_error()
            uris = [client.connection(s).ws.uri for s in socks]  # type: ignore[union-attr]
            assert uris[0] is uris[1] and uris[2] is not uris[0]
            assert uris[3] is not uris[4] and uris[3] == uris[4]  # over the limit: not kept
            assert len(client.cached_urls) == 2
            for _ in range(2):
                assert await client.open("http://127.0.0.1/", options) == -1
                assert client.cached_urls == {urls[0], urls[2]}
            client.write(socks[4], "still works")
            assert (await client.read(socks[4], scaled(5))).data == "still works"
            await client.aclose()

    arun(body)


# --- the 101 answer taken without websockets' parser (``compat.accept_answer``) ---------------

_OK = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
_ANSWERS: dict[str, tuple[bytes, ...]] = {  # the answer as written, chunk by chunk
    "plain": ((_OK + "Sec-WebSocket-Accept: {accept}\r\n\r\n").encode(),),
    "with a frame behind it": ((_OK + "Sec-WebSocket-Accept: {accept}\r\n\r\n").encode() + b"\x81\x02hi",),
    "lower case, more headers, tabs": (
        b"HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
        b"X-Server:\tnode \r\nsec-websocket-accept:{accept}\r\nDate: today\r\n\r\n",
    ),
    "cut in two": (_OK.encode(), b"Sec-WebSocket-Accept: {accept}\r\n\r\n"),
    "a status line, then another": (
        b"HTTP/1.1 101 X\r\n",
        (_OK + "Sec-WebSocket-Accept: {accept}\r\n\r\n").encode(),
    ),
    "two upgrade headers": ((_OK + "Upgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode(),),
    "two connection headers": (
        b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    ),
    "connection: close": (
        b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: close\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    ),
    "upgrade to websockets": (
        b"HTTP/1.1 101 OK\r\nUpgrade: websockets\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    ),
    "upgrade to two protocols": (
        b"HTTP/1.1 101 OK\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    ),
    "an empty extensions header": (
        (_OK + "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions:\r\n\r\n").encode(),
    ),
    "wrong accept": ((_OK + "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n").encode(),),
    "two accepts": (
        (_OK + "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode(),
    ),
    "no upgrade": (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
    ),
    "an extension not asked for": (
        (
            _OK + "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode(),
    ),
    "a subprotocol not asked for": (
        (_OK + "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n").encode(),
    ),
    "a line without a colon": ((_OK + "Sec-WebSocket-Accept: {accept}\r\nBroken\r\n\r\n").encode(),),
    "a control character": ((_OK + "Sec-WebSocket-Accept: {accept}\r\nX: a\x01b\r\n\r\n").encode(),),
    "obs-text in a value": (
        (_OK + "Sec-WebSocket-Accept: {accept}\r\nX: caf\xe9\r\n\r\n").encode("latin-1"),
    ),
    "a space in a name": ((_OK + "Sec-WebSocket-Accept: {accept}\r\nBad Name: x\r\n\r\n").encode(),),
    "status 200": (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",),
    "HTTP/1.0": (b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",),
    "a status line too long": (
        b"HTTP/1.1 101 " + b"r" * 9000 + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    ),
    "too many headers": ((_OK + "Sec-WebSocket-Accept: {accept}\r\n" + "X: y\r\n" * 130 + "\r\n").encode(),),
}


async def _open_against(chunks: tuple[bytes, ...], direct: bool) -> tuple[int, str, str | None]:
    """Open against a server that answers with ``chunks`` (then sends nothing): the rc, the last
    error's text, and the first message read within 0.3 s when the open succeeded."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        for chunk in chunks:
            writer.write(chunk.replace(b"{accept}", accept_key(key).encode()))
            await writer.drain()
            await asyncio.sleep(0.05)
        await asyncio.Event().wait()

    async with HostileServer(behaviour) as server:
        client = WebSocketClient(direct_receive=direct)
        rc = await client.open(server.url, ConnectOptions(timeout_s=scaled(2)))
        error = client.last_error()
        text = error.text.replace(str(server.port), "PORT") if error is not None and rc < 0 else ""
        message = None
        if rc >= 0:
            read = await client.read(rc, 0.3)
            message = read.data if read.rc == 0 else f"rc {read.rc}"  # type: ignore[assignment]
            await client.close(rc, scaled(1))
        return rc if rc < 0 else 0, text, message


@pytest.mark.parametrize("name", sorted(_ANSWERS))
def test_the_answer_taken_directly_is_what_websockets_makes_of_it(name: str, arun: Arun) -> None:
    """Every answer gives the same open (rc, error text, the first message) with the direct path
    as with websockets' parser alone: the shortcut takes only what websockets would accept."""
    chunks = _ANSWERS[name]
    direct = arun(lambda: _open_against(chunks, True))
    alone = arun(lambda: _open_against(chunks, False))
    assert direct == alone
    if name in (
        "plain",
        "lower case, more headers, tabs",
        "cut in two",
        "obs-text in a value",
        "two connection headers",
    ):
        assert direct[0] == 0
    if name == "with a frame behind it":
        assert direct == (0, "", "hi")


@pytest.mark.parametrize("name", sorted(n for n, chunks in _ANSWERS.items() if len(chunks) == 1))
def test_the_answer_is_taken_directly_exactly_where_websockets_opens(name: str) -> None:
    """On the protocol object: ``accept_answer`` takes an answer (and leaves the connection open,
    its frame loop alone, ready for the direct path) exactly when websockets' own parser opens
    the connection on it; elsewhere it changes nothing."""
    from websockets.protocol import State
    from websockets.uri import parse_uri

    from runner.client import compat

    def fresh() -> Any:
        ws = compat.new_client_protocol(
            parse_uri("ws://127.0.0.1:9/"), origin=None, compression=False, subprotocols=[], max_size=None
        )
        ws.send_request(ws.connect())
        ws.data_to_send()
        return ws

    (chunk,) = _ANSWERS[name]
    ours, theirs = fresh(), fresh()
    data = chunk.replace(b"{accept}", accept_key(ours.key).encode())
    start = compat.accept_answer(ours, data)
    theirs.receive_data(chunk.replace(b"{accept}", accept_key(theirs.key).encode()))
    opened = theirs.state is State.OPEN and theirs.handshake_exc is None
    assert (start is not None) == opened
    if start is None:
        assert ours.state is State.CONNECTING and not ours.reader.buffer  # untouched
    else:
        assert data[start:] in (b"", b"\x81\x02hi")
        assert ours.state is State.OPEN and not ours.extensions and ours.subprotocol is None
        assert compat.direct_receive_ready(ours) and not compat.holds_http_answer(ours)


# --- the upgrade request sent from the bytes of the first (``compat.send_upgrade_request``) ----

_REQUEST_CASES: dict[str, tuple[str, ConnectOptions]] = {
    "plain": ("/", ConnectOptions()),
    "a path, a query and headers, two replacing defaults": (
        "/chat/room%201?x=1&y=%C3%A9",
        ConnectOptions(
            headers=(("X-Token", "a b:c"), ("host", "example.test:8443"), ("USER-AGENT", "mine/1"))
        ),
    ),
    "an origin and subprotocols": ("/", ConnectOptions(origin="https://o.test", subprotocols=("chat", "v2"))),
    "user info in the URL": ("/", ConnectOptions()),
    "the key itself replaced": (
        "/",
        ConnectOptions(headers=(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),)),
    ),
    "compression (never cut)": ("/", ConnectOptions(compression=True)),
}


@pytest.mark.parametrize("name", sorted(_REQUEST_CASES))
def test_every_upgrade_request_is_the_one_websockets_writes(
    name: str, arun: Arun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three opens with the same options, then one with a header more, each send, byte for
    byte, the request websockets' own ``ClientProtocol`` writes for that connection's key with
    our User-Agent and the options' headers replacing its defaults of the same name; each with
    a key of its own (the second and third come from the first one's bytes where the request
    may be cut; the fourth from its own)."""
    from websockets.client import ClientProtocol
    from websockets.datastructures import Headers
    from websockets.typing import Origin, Subprotocol
    from websockets.uri import parse_uri

    from runner.client import compat
    from runner.client.connect import USER_AGENT

    path, options = _REQUEST_CASES[name]
    monkeypatch.setattr(compat, "_REQUESTS", {})  # not filled to its bound by the tests before
    options = dataclasses.replace(options, timeout_s=scaled(2))
    runs = [options] * 3 + [dataclasses.replace(options, headers=(*options.headers, ("X-Extra", "1")))]
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        requests.append(request)
        key = Headers()
        for line in request.decode("latin-1").split("\r\n")[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                key[k] = v.strip()
        writer.write(f"{_OK}Sec-WebSocket-Accept: {accept_key(key['Sec-WebSocket-Key'])}\r\n\r\n".encode())
        await writer.drain()
        writer.close()  # the request is all this server wanted

    async def body() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        netloc = f"someone:s3cret@127.0.0.1:{port}" if name == "user info in the URL" else f"127.0.0.1:{port}"
        url = f"ws://{netloc}{path}"
        client = WebSocketClient()
        for each in runs:
            rc = await client.open(url, each)
            if rc >= 0:
                await client.close(rc, scaled(1))
        server.close()
        await client.aclose()
        assert len(requests) == len(runs)
        keys = set()
        for request, options in zip(requests, runs, strict=True):
            sent = Headers()
            for line in request.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, _, v = line.partition(":")
                    sent[k] = v.strip()
            reference = ClientProtocol(
                parse_uri(url),
                origin=Origin(options.origin) if options.origin else None,
                subprotocols=[Subprotocol(s) for s in options.subprotocols] or None,
                extensions=[compat.ClientPerMessageDeflateFactory()] if options.compression else None,
            )
            ours = dict(sent.raw_items())
            reference.key = ours.get("Sec-WebSocket-Key", "")
            if any(k.lower() == "sec-websocket-key" for k, _ in options.headers):
                reference.key = "not used"  # the options' header replaces the connection's key
            else:
                keys.add(reference.key)
            expected = reference.connect()
            expected.headers["User-Agent"] = USER_AGENT
            for k, v in options.headers:
                if k in expected.headers:
                    del expected.headers[k]
                expected.headers[k] = v
            assert request == expected.serialize()
        if not any(k.lower() == "sec-websocket-key" for k, _ in options.headers):
            assert len(keys) == len(runs)  # a key of its own each time
        # Where the request may be cut around its key, it was, once; elsewhere never.
        cut = not options.compression and "key itself" not in name
        assert len(compat._REQUESTS) == (2 if cut else 0)

    arun(body)
