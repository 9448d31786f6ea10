"""The direct receive path of ``WsConnection`` (whole, final, unmasked text and binary frames parsed
without websockets' generator parser) gives exactly what websockets' parser alone gives: the same
messages at the same moments, the same failures, close codes and frames sent back, however the
stream is cut into TCP chunks. Protocol tests without a socket first (every cut of every stream,
compared with a connection whose direct path is off), then real loopback servers. The direct
path's own frame splitting is unit-tested in tests/test_direct_receive.py."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import scaled
from hostile_servers import HostileServer, close_frame, frame, upgrade_response
from websockets.frames import Frame
from websockets.protocol import State
from websockets.streams import StreamReader
from websockets.uri import parse_uri

from runner.client import ConnectOptions, ErrorKind, WebSocketClient
from runner.client.compat import WsClientProtocol, direct_receive_ready
from runner.client.connection import WsConnection
from runner.server import EmbeddedServer

Arun = Callable[[Callable[[], Any]], Any]

# --- the frames servers send ------------------------------------------------------------------

SMALL = frame(0x1, b"hello")
EMPTY_TEXT = frame(0x1, b"")
EMPTY_BINARY = frame(0x2, b"")
SNOWMAN = frame(0x1, "zo\u00eb \u2603".encode())
TEXT_125 = frame(0x1, b"f" * 125)  # the longest 7-bit length
TEXT_126 = frame(0x1, b"g" * 126)  # the shortest 16-bit length
TEXT_200 = frame(0x1, b"a" * 200)
BINARY = frame(0x2, bytes(range(50)))
BINARY_300 = frame(0x2, bytes(i % 251 for i in range(300)))
NON_MINIMAL = bytes([0x81, 126, 0, 5]) + b"short"  # a 16-bit length for 5 bytes: allowed
PING = frame(0x9, b"p1")
PONG = frame(0xA, b"unsolicited")
FRAGMENTED = frame(0x1, b"frag-", fin=False) + frame(0x0, b"men", fin=False) + frame(0x0, b"ted")
FRAGMENTED_PING = frame(0x2, b"\x01", fin=False) + frame(0x9, b"in") + frame(0x0, b"\x02")
SPLIT_UTF8 = frame(0x1, "\u2603".encode()[:1], fin=False) + frame(0x0, "\u2603".encode()[1:])
CLOSE = close_frame(1000, b"bye")
BAD_UTF8 = frame(0x1, b"ok \xff\xfe")
MASKED = frame(0x1, b"masked", mask=True)
RSV1 = bytes([0x80 | 0x40 | 0x1, 5]) + b"hello"
RESERVED_OPCODE = frame(0x3, b"x")
BIG_64 = frame(0x2, b"z" * 70000)  # a 64-bit length
TEXT_65535 = frame(0x1, b"m" * 65535)  # the longest 16-bit length
BAD_CLOSE = close_frame(1005)

#: Every kind of frame, for the random streams (a close or a failure ends what counts).
CATALOG = [
    SMALL,
    EMPTY_TEXT,
    EMPTY_BINARY,
    SNOWMAN,
    TEXT_125,
    TEXT_126,
    TEXT_200,
    BINARY,
    BINARY_300,
    NON_MINIMAL,
    PING,
    PONG,
    FRAGMENTED,
    FRAGMENTED_PING,
    SPLIT_UTF8,
    CLOSE,
    MASKED,
    RSV1,
    RESERVED_OPCODE,
    BAD_CLOSE,
]

# --- pure protocol tests: a WsConnection fed chunks by hand -----------------------------------


class _Transport:
    """What ``WsConnection`` calls on its transport, recorded."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.paused = False
        self.eof = False

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _connection(
    direct: bool, loop: asyncio.AbstractEventLoop, max_size: int = 1 << 20, **limits: int
) -> tuple[WsConnection, _Transport]:
    """A connection past its handshake, on a recording transport; ``direct``: with the direct
    receive path (the reference, without it, hands every byte to websockets' parser)."""
    ws = WsClientProtocol(parse_uri("ws://127.0.0.1/"), max_size=max_size)
    ws.send_request(ws.connect())
    conn = WsConnection(ws, loop, direct_receive=direct, **limits)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(upgrade_response(ws.key))
    assert ws.state is State.OPEN
    transport.out.clear()
    return conn, transport


def _sent(transport: _Transport) -> list[tuple[int, bytes]]:
    """The client's (masked) frames written so far, as (opcode, payload)."""
    reader = StreamReader()
    reader.feed_data(b"".join(transport.out))
    reader.feed_eof()
    frames = []
    while reader.buffer:
        gen = Frame.parse(reader.read_exact, mask=True)
        try:
            next(gen)
        except StopIteration as stop:
            frames.append((int(stop.value.opcode), bytes(stop.value.data)))
            continue
        raise AssertionError("incomplete frame written")
    return frames


def _take(conn: WsConnection, most: int = 10_000) -> list[str | bytes]:
    """Read every queued message (resuming a paused connection as a reader does)."""
    taken: list[str | bytes] = []
    for _ in range(most):
        result = conn.receive_nowait()
        if result is None:
            break
        assert result.data is not None
        taken.append(result.data)
    return taken


def _state(conn: WsConnection, transport: _Transport, taken: list[object]) -> dict[str, object]:
    """What a reader and the peer can see of ``conn``, with every queued message read into
    ``taken``."""
    taken.extend((type(d).__name__, d) for d in _take(conn))
    ws = conn.ws
    return {
        "messages": list(taken),
        "closed": conn.closed,
        "invalid_utf8": conn.invalid_utf8,
        "parser_exc": repr(conn.parser_failure),
        "close_rcvd": ws.close_rcvd,
        "close_sent": ws.close_sent,
        "state": ws.state,
        "current_size": getattr(ws, "current_size", None),  # websockets >= 15 only
        "sent": _sent(transport),
        "eof_sent": transport.eof,
    }


def _cuts(size: int, rng: random.Random, n: int) -> list[int]:
    return sorted(rng.sample(range(1, size), min(n, size - 1))) if size > 1 else []


def _chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _compare(
    loop: asyncio.AbstractEventLoop,
    chunks: list[bytes],
    max_size: int = 1 << 20,
    drain_every: bool = False,
    **limits: int,
) -> dict[str, object]:
    """Feed the same chunks to both connections; after every chunk and at the end (EOF, then the
    connection lost) both must show the same state. Returns the final state."""
    conns = [_connection(direct, loop, max_size, **limits) for direct in (True, False)]
    taken: list[list[object]] = [[], []]
    for chunk in chunks:
        for i, (conn, _) in enumerate(conns):
            conn.data_received(chunk)
            if drain_every:  # a reader taking every message: resumes a paused connection
                taken[i].extend((type(d).__name__, d) for d in _take(conn))
        if not limits:  # with queue limits the pause points differ; the end result may not
            assert _state(*conns[0], taken[0]) == _state(*conns[1], taken[1]), chunks
    for conn, _ in conns:
        conn.eof_received()
        conn.connection_lost(None)
    direct, reference = (_state(c, t, taken[i]) for i, (c, t) in enumerate(conns))
    assert direct == reference, chunks
    return direct


STREAMS = {
    "small_frames": SMALL + TEXT_200 + BINARY + EMPTY_TEXT + SNOWMAN + NON_MINIMAL + CLOSE,
    "length_edges": TEXT_125 + TEXT_126 + EMPTY_BINARY + TEXT_125 + SMALL,
    "ping_between": SMALL + PING + TEXT_200 + PONG + BINARY + CLOSE,
    "fragments": SMALL + FRAGMENTED + TEXT_200 + FRAGMENTED_PING + SPLIT_UTF8 + SMALL,
    "bad_utf8": SMALL + TEXT_200 + BAD_UTF8 + SMALL + BINARY,
    "masked": SMALL + TEXT_200 + MASKED + SMALL,
    "rsv1": SMALL + RSV1 + SMALL,
    "reserved_opcode": BINARY + RESERVED_OPCODE + SMALL,
    "bad_close": SMALL + BAD_CLOSE + SMALL,
    "after_close": SMALL + CLOSE + SMALL + TEXT_200,
    "no_close": SMALL + TEXT_200 + SMALL[:4],  # ends in the middle of a frame
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_two_chunk_cut_gives_what_websockets_gives(loop: asyncio.AbstractEventLoop, name: str) -> None:
    """A stream cut at every byte offset into two chunks: same messages, failures and replies."""
    stream = STREAMS[name]
    for cut in range(len(stream) + 1):
        _compare(loop, _chunks(stream, [cut] if 0 < cut < len(stream) else []))


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_byte_by_byte_and_random_cuts_give_what_websockets_gives(
    loop: asyncio.AbstractEventLoop, name: str
) -> None:
    """One byte per chunk, and 50 random cuttings into 2-6 chunks: same as websockets alone."""
    stream = STREAMS[name]
    _compare(loop, [stream[i : i + 1] for i in range(len(stream))])
    rng = random.Random(name)
    for _ in range(50):
        _compare(loop, _chunks(stream, _cuts(len(stream), rng, rng.randint(1, 5))))


def test_handshake_and_frames_in_one_chunk(loop: asyncio.AbstractEventLoop) -> None:
    """Frames that arrive with the 101 answer are taken right behind it (the answer by
    ``compat.accept_answer``, whole frames by the direct path); half a frame goes to websockets,
    which finishes it, and the direct path takes over again once it waits between frames."""
    ws = WsClientProtocol(parse_uri("ws://127.0.0.1/"))
    ws.send_request(ws.connect())
    conn = WsConnection(ws, loop, direct_receive=True)
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    conn.data_received(upgrade_response(ws.key) + SMALL + TEXT_200[:3])
    assert _take(conn) == ["hello"] and conn.direct_messages == 1
    conn.data_received(TEXT_200[3:] + BINARY)  # websockets held half a frame: all its
    assert _take(conn) == ["a" * 200, bytes(range(50))] and conn.direct_messages == 1
    conn.data_received(SMALL + TEXT_126)
    assert _take(conn) == ["hello", "g" * 126] and conn.direct_messages == 3


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_give_what_websockets_gives(loop: asyncio.AbstractEventLoop, seed: int) -> None:
    """Random sequences of every kind of frame, randomly cut: same as websockets alone (text that
    is not UTF-8 only last: see the next test)."""
    rng = random.Random(seed)
    for _ in range(10):
        stream = b"".join(rng.choice(CATALOG) for _ in range(rng.randint(1, 10)))
        if rng.random() < 0.2:
            stream += BAD_UTF8
        _compare(loop, _chunks(stream, _cuts(len(stream), rng, rng.randint(0, 6))))


def test_nothing_after_invalid_utf8_is_processed(loop: asyncio.AbstractEventLoop) -> None:
    """The one intended difference: websockets alone parses a whole chunk before the text is
    decoded, so a ping after the bad text was answered and a bad frame after it decided the
    close code. The direct path stops at the bad text (RFC 6455 7.1.7): only the 1007 close."""
    for direct in (True, False):
        conn, transport = _connection(direct, loop)
        conn.data_received(SMALL + BAD_UTF8 + PING + MASKED)
        assert _take(conn) == ["hello"] and conn.invalid_utf8 is not None
        sent = _sent(transport)
        if direct:
            assert sent == [(0x8, struct.pack("!H", 1007) + b"invalid UTF-8")]
        else:
            assert sent == [(0xA, b"p1"), (0x8, struct.pack("!H", 1002) + b"incorrect masking")]


@pytest.mark.parametrize(
    ("max_size", "stream"),
    [
        (300, TEXT_200 + BINARY_300 + SMALL + frame(0x2, b"q" * 301) + SMALL),
        (10, SMALL + frame(0x1, b"0123456789") + frame(0x1, b"0123456789x") + SMALL),
        (126, TEXT_126 + TEXT_125 + frame(0x1, b"h" * 127) + SMALL),
        (0, EMPTY_TEXT + EMPTY_BINARY + SMALL),
    ],
    ids=["16-bit", "7-bit", "at-the-edge", "zero"],
)
def test_message_size_limit_is_kept_at_every_cut(
    loop: asyncio.AbstractEventLoop, max_size: int, stream: bytes
) -> None:
    """A frame above ``max_message_size`` fails as websockets fails it (1009), however cut; a frame
    of exactly the limit is a message."""
    for cut in range(0, len(stream) + 1, 7):
        final = _compare(loop, _chunks(stream, [cut] if 0 < cut < len(stream) else []), max_size=max_size)
        sent: list[tuple[int, bytes]] = final["sent"]  # type: ignore[assignment]
        assert "PayloadTooBig" in str(final["parser_exc"])
        assert sent[-1][0] == 0x8 and sent[-1][1][:2] == struct.pack("!H", 1009)


def test_large_frames_cut_near_their_headers(loop: asyncio.AbstractEventLoop) -> None:
    """64-bit and longest 16-bit lengths between small frames, cut around every frame edge."""
    parts = [SMALL, BIG_64, TEXT_200, TEXT_65535, BINARY, CLOSE]
    stream = b"".join(parts)
    edges, at = [], 0
    for part in parts:
        at += len(part)
        edges.append(at)
    cuts = sorted({c for e in [0, *edges] for c in range(e - 3, e + 12) if 0 < c < len(stream)})
    for cut in cuts:
        _compare(loop, _chunks(stream, [cut]))
    _compare(loop, _chunks(stream, cuts))


def test_queue_limits_pause_at_frame_edges_and_lose_nothing(loop: asyncio.AbstractEventLoop) -> None:
    """With tiny queue limits reading pauses part-way through a chunk; a reader taking every
    message still gets all of them, in order, and the direct path never overshoots the limit."""
    stream = (SMALL + TEXT_200 + BINARY + PING + SNOWMAN + FRAGMENTED + TEXT_126) * 20 + CLOSE
    rng = random.Random(7)
    for _ in range(30):
        chunks = _chunks(stream, _cuts(len(stream), rng, rng.randint(0, 12)))
        final = _compare(loop, chunks, drain_every=True, max_queued_messages=3, max_queued_bytes=1000)
        assert len(final["messages"]) == 20 * 6  # type: ignore[arg-type]
    conn, transport = _connection(True, loop, max_queued_messages=3, max_queued_bytes=1 << 20)
    conn.data_received(SMALL * 10)
    assert conn.queued == (4, 20) and transport.paused and "unparsed bytes" in conn.holding()
    assert _take(conn) == ["hello"] * 10 and not transport.paused  # the 6 kept aside, once read


def test_parser_boundary_is_read_from_websockets_generators(loop: asyncio.AbstractEventLoop) -> None:
    """``direct_receive_ready`` is false while websockets holds any part of a frame, including the
    moment it has consumed a whole header and waits for the payload (its buffer is then empty)."""
    ws = WsClientProtocol(parse_uri("ws://127.0.0.1/"))
    assert not direct_receive_ready(ws)  # the HTTP response comes first
    ws.send_request(ws.connect())
    ws.receive_data(upgrade_response(ws.key))
    assert direct_receive_ready(ws)
    for part in (TEXT_200[:1], TEXT_200[1:2], TEXT_200[2:4], TEXT_200[4:10], TEXT_200[10:-1]):
        ws.receive_data(part)
        assert not direct_receive_ready(ws)
    ws.receive_data(TEXT_200[-1:])
    assert direct_receive_ready(ws)
    ws.receive_data(SMALL[:2])  # the whole 2-byte header: consumed, buffer empty, mid-frame
    assert not ws.reader.buffer and not direct_receive_ready(ws)
    ws.receive_data(SMALL[2:] + CLOSE)
    assert not direct_receive_ready(ws)  # closed: websockets discards from now on


# --- real loopback servers --------------------------------------------------------------------


def _send_in_two(stream: bytes, cut: int, pause_s: float = 0.02) -> Any:
    """A server that upgrades, sends ``stream[:cut]``, waits, sends the rest, then drops the
    connection once the client sends anything (its close frame)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key) + stream[:cut])
        await writer.drain()
        await asyncio.sleep(pause_s)
        writer.write(stream[cut:])
        await writer.drain()
        await reader.read(1)

    return behaviour


async def _read_all(client: WebSocketClient, sock: int, most: int) -> list[tuple[int, object, int | None]]:
    """Reads until one is not a message (at most ``most`` reads): (rc, data, close_code)."""
    results: list[tuple[int, object, int | None]] = []
    for _ in range(most):
        result = await client.read(sock, scaled(5))
        results.append((result.rc, result.data, result.close_code))
        if result.rc != 0:
            break
    return results


SPLIT_STREAM = SMALL + TEXT_200 + BINARY + PING + SNOWMAN + TEXT_126 + FRAGMENTED + CLOSE
SPLIT_EXPECTED = [
    (0, "hello", None),
    (0, "a" * 200, None),
    (0, bytes(range(50)), None),
    (0, "zo\u00eb \u2603", None),
    (0, "g" * 126, None),
    (0, "frag-mented", None),
    (1, None, 1000),
]


def test_frames_split_at_every_byte_offset_arrive_whole(arun: Arun, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server sends its frames in two TCP writes, cut at every byte offset (one connection per
    offset): every read gives the same messages, then 1 with the close code."""
    chunks: dict[int, int] = {}
    received = WsConnection.data_received

    def counting(self: WsConnection, data: bytes) -> None:
        chunks[id(self)] = chunks.get(id(self), 0) + 1
        received(self, data)

    monkeypatch.setattr(WsConnection, "data_received", counting)
    split = [0]

    async def one(cut: int) -> None:
        async with HostileServer(_send_in_two(SPLIT_STREAM, cut)) as server:
            client = WebSocketClient()
            sock = await client.open(server.url, ConnectOptions(timeout_s=scaled(5)))
            assert sock >= 0, client.last_error()
            assert await _read_all(client, sock, 10) == SPLIT_EXPECTED, cut
            err = client.last_error()
            assert err is not None
            assert err.text == f"connection closed: peer closed socket {sock} with code 1000 (bye)"
            split[0] += chunks[id(client.connection(sock))] >= 2
            await client.aclose()

    async def body() -> None:
        cuts = list(range(len(SPLIT_STREAM) + 1))
        for start in range(0, len(cuts), 50):  # 50 servers at a time
            await asyncio.gather(*(one(c) for c in cuts[start : start + 50]))

    arun(body)
    assert split[0] >= 0.5 * len(SPLIT_STREAM)  # the cut did reach us as two chunks (mostly)


def _answering_server(stream: bytes, seen: list[tuple[int, bytes]]) -> Any:
    """Upgrades, sends ``stream`` in one write, records the client's frames (unmasked) up to its
    close frame, then drops the connection."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key) + stream)
        await writer.drain()
        for _ in range(100):
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
            mask = await reader.readexactly(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(length)))
            seen.append((head[0] & 0x0F, data))
            if head[0] & 0x0F == 0x8:
                break

    return behaviour


def test_one_chunk_mixing_data_frames_pings_fragments_and_close(arun: Arun) -> None:
    """Small and 16-bit-length frames, pings (one inside a fragmented message), an unsolicited
    pong and a close in one TCP write: every message in order, a pong for each ping, the close
    echoed, then 1 with its code."""
    stream = SMALL + TEXT_200 + PING + BINARY + PONG + FRAGMENTED_PING + TEXT_126 + close_frame(4000, b"done")
    seen: list[tuple[int, bytes]] = []

    async def body() -> list[tuple[int, object, int | None]]:
        async with HostileServer(_answering_server(stream, seen)) as server:
            client = WebSocketClient()
            sock = await client.open(server.url, ConnectOptions(timeout_s=scaled(5)))
            results = await _read_all(client, sock, 10)
            for _ in range(200):  # the server records our replies asynchronously
                if len(seen) >= 3:
                    break
                await asyncio.sleep(0.01)
            await client.aclose()
            return results

    assert arun(body) == [
        (0, "hello", None),
        (0, "a" * 200, None),
        (0, bytes(range(50)), None),
        (0, b"\x01\x02", None),
        (0, "g" * 126, None),
        (1, None, 4000),
    ]
    assert seen == [(0xA, b"p1"), (0xA, b"in"), (0x8, struct.pack("!H", 4000) + b"done")]


def test_invalid_utf8_after_good_messages_in_one_chunk(arun: Arun) -> None:
    """Good messages, then a text frame that is not UTF-8, then more, in one write: the good ones
    are read, then -1 with the protocol error; nothing after it is delivered; 1007 is sent."""
    stream = SMALL + TEXT_200 + BAD_UTF8 + SMALL + BINARY
    seen: list[tuple[int, bytes]] = []

    async def body() -> tuple[list[tuple[int, object, int | None]], str, int]:
        async with HostileServer(_answering_server(stream, seen)) as server:
            client = WebSocketClient()
            sock = await client.open(server.url, ConnectOptions(timeout_s=scaled(5)))
            results = await _read_all(client, sock, 10)
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.PROTOCOL
            again = (await client.read(sock, scaled(1))).rc
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.01)
            await client.aclose()
            return results, err.text, again

    results, text, again = arun(body)
    assert results == [(0, "hello", None), (0, "a" * 200, None), (-1, None, None)]
    assert text == "protocol error: socket 0: invalid UTF-8 in a text message (invalid start byte at byte 3)"
    assert again == -1
    assert seen[0][0] == 0x8 and seen[0][1][:2] == struct.pack("!H", 1007)


@pytest.mark.parametrize(
    ("limit", "sizes"),
    [(300, [200, 300, 301]), (10, [10, 0, 11]), (70000, [65535, 70000, 70001])],
    ids=["16-bit", "7-bit", "64-bit"],
)
def test_frames_over_max_message_size_fail_the_read(arun: Arun, limit: int, sizes: list[int]) -> None:
    """Frames up to ``max_message_size`` are read; the first one above it gives -1 with the size
    in the error, and nothing after it is read."""
    stream = b"".join(frame(0x2, b"x" * n) for n in sizes) + SMALL

    async def body() -> tuple[list[tuple[int, object, int | None]], str]:
        async with HostileServer(_send_in_two(stream, 0)) as server:
            client = WebSocketClient()
            options = ConnectOptions(timeout_s=scaled(5), max_message_size=limit)
            sock = await client.open(server.url, options)
            results = await _read_all(client, sock, 10)
            err = client.last_error()
            assert err is not None
            await client.aclose()
            return results, err.text

    results, text = arun(body)
    assert results == [(0, b"x" * sizes[0], None), (0, b"x" * sizes[1], None), (-1, None, None)]
    assert text == f"protocol error: socket 0: frame with {sizes[2]} bytes exceeds limit of {limit} bytes"


def test_echoes_take_the_direct_path_and_it_resumes_after_a_ping(arun: Arun) -> None:
    """Plain echoes never reach websockets' parser; a ping's pong does, and the echoes after it
    take the direct path again."""

    async def body() -> tuple[int, int, int]:
        async with EmbeddedServer() as server:
            client = WebSocketClient(direct_receive=True)
            sock = await client.open(server.url + "/echo", ConnectOptions(timeout_s=scaled(5)))
            conn = client.connection(sock)
            assert conn is not None and conn.direct_receive
            calls = [0]
            receive = conn.ws.receive_data

            def counting(data: bytes | bytearray) -> None:
                calls[0] += 1
                receive(data)

            conn.ws.receive_data = counting  # type: ignore[method-assign]
            for i in range(20):
                assert client.write(sock, f"m{i}" * (i * 10)) > 0 or i == 0
                assert (await client.read(sock, scaled(5))).data == f"m{i}" * (i * 10)
            before_ping = calls[0]
            assert conn.direct_messages == 20
            assert (await client.ping(sock, scaled(5))).rc == 0
            after_ping = calls[0]
            for i in range(20):
                client.write(sock, b"b%d" % i)
                assert (await client.read(sock, scaled(5))).data == b"b%d" % i
            end = calls[0]
            assert conn.direct_messages == 40
            await client.aclose()
            return before_ping, after_ping, end

    before_ping, after_ping, end = arun(body)
    assert before_ping == 0
    assert after_ping >= 1
    assert end == after_ping


def test_direct_path_switched_off_leaves_every_message_to_websockets(arun: Arun) -> None:
    """``WebSocketClient(direct_receive=False)``: the same echoes arrive, none on the direct path,
    every one through websockets' parser."""

    async def body() -> tuple[int, int]:
        async with EmbeddedServer() as server:
            client = WebSocketClient(direct_receive=False)
            sock = await client.open(server.url + "/echo", ConnectOptions(timeout_s=scaled(5)))
            conn = client.connection(sock)
            assert conn is not None and not conn.direct_receive
            calls = [0]
            receive = conn.ws.receive_data

            def counting(data: bytes | bytearray) -> None:
                calls[0] += 1
                receive(data)

            conn.ws.receive_data = counting  # type: ignore[method-assign]
            for i in range(20):
                client.write(sock, f"m{i}" if i % 2 else b"b%d" % i)
                assert (await client.read(sock, scaled(5))).data == (f"m{i}" if i % 2 else b"b%d" % i)
            await client.aclose()
            return conn.direct_messages, calls[0]

    direct, parsed_by_websockets = arun(body)
    assert direct == 0 and parsed_by_websockets >= 20


def test_separate_fragment_limit_leaves_every_frame_to_websockets(loop: asyncio.AbstractEventLoop) -> None:
    """With websockets' (message, fragment) size limits the direct path stays off: the limits
    are websockets' to apply, frame by frame."""
    stream = SMALL + frame(0x2, b"y" * 100) + frame(0x2, b"y" * 101) + SMALL
    for cut in range(len(stream) + 1):
        final = _compare(loop, _chunks(stream, [cut] if 0 < cut < len(stream) else []), max_size=(1000, 100))  # type: ignore[arg-type]
        assert final["messages"] == [("str", "hello"), ("bytes", b"y" * 100)]
    conn, _ = _connection(True, loop, max_size=(1000, 100))  # type: ignore[arg-type]
    conn.data_received(SMALL + frame(0x2, b"y" * 100))
    assert _take(conn) == ["hello", b"y" * 100] and conn.direct_messages == 0
    conn, _ = _connection(True, loop, max_size=None)  # type: ignore[arg-type]  # no limit at all
    conn.data_received(SMALL + TEXT_65535)
    assert _take(conn) == ["hello", "m" * 65535] and conn.direct_messages == 2


def test_compressed_connection_leaves_every_frame_to_websockets(arun: Arun) -> None:
    """With permessage-deflate negotiated the direct path stays off (websockets decompresses):
    small and large echoes, compressed or not by the server, come back as sent."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient(direct_receive=True)
            sock = await client.open(
                server.url + "/echo", ConnectOptions(timeout_s=scaled(5), compression=True)
            )
            conn = client.connection(sock)
            assert conn is not None and conn.ws.extensions
            for data in ("a", "b" * 200, b"\x00" * 3, "c" * 70000, "\u2603" * 50):
                client.write(sock, data)
                assert (await client.read(sock, scaled(5))).data == data
            assert conn.direct_messages == 0
            await client.aclose()

    arun(body)
