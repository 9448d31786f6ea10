"""Purpose-built broken servers for the hardening tests: raw asyncio TCP servers on 127.0.0.1,
port 0, speaking just enough HTTP and WebSocket to misbehave in one precise way.

``HostileServer(behaviour)`` is an async context manager with ``.url``; ``behaviour`` is a
coroutine ``(reader, writer, key) -> None`` run per connection after the HTTP request has been
read (``key`` is its ``Sec-WebSocket-Key``). Each behaviour below is one fault; ``BEHAVIOURS``
names them for the test that runs them all at once.

``AcceptThenClose`` is the one server that runs in a thread of its own: a server that closes
right after the accept races with the client's loop, and a server on the client's own loop would
always lose that race the same way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import socket
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import cast

__all__ = [
    "BEHAVIOURS",
    "MALFORMED_UPGRADES",
    "AcceptThenClose",
    "Behaviour",
    "HostileServer",
    "accept_key",
    "answers_our_close",
    "answers_then_hangs",
    "close_frame",
    "deflated",
    "echo_then_hang",
    "frame",
    "ping_flood",
    "recording_close",
]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a request's Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = False,
    length: int | None = None,
    rsv1: bool = False,
) -> bytes:
    """One frame as a server would send it (unmasked unless ``mask``); ``length`` overrides the
    announced payload length (to announce what is never sent); ``rsv1`` marks a compressed
    message (permessage-deflate)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A close frame with ``code`` and raw ``reason`` bytes (neither is checked: that is the point)."""
    return frame(0x8, struct.pack("!H", code) + reason)


def upgrade_response(key: str, accept: str | None = None, extra: str = "") -> bytes:
    """A 101 answer; ``accept`` replaces the correct Sec-WebSocket-Accept; ``extra`` is more
    header lines (each ending in CRLF)."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept or accept_key(key)}\r\n{extra}\r\n"
    ).encode()


def deflated(data: bytes, window_bits: int) -> bytes:
    """``data`` compressed as one permessage-deflate message (RFC 7692 7.2.1: raw deflate, sync
    flush, the trailing 00 00 ff ff removed) with a ``window_bits`` window."""
    compressor = zlib.compressobj(wbits=-window_bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


async def _forever() -> None:
    await asyncio.Event().wait()


# --- the behaviours ---------------------------------------------------------------------------


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    """Reads the upgrade request and never answers."""
    await _forever()


async def html_200(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    """Answers the upgrade with a web page (200 OK), as a misrouted HTTP server would."""
    body = b"<html><body>not a websocket</body></html>"
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    await writer.drain()
    await _forever()


async def wrong_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    """Answers 101 with a Sec-WebSocket-Accept that does not belong to our key."""
    writer.write(upgrade_response(key, accept=accept_key("not-the-key")))
    await writer.drain()
    await _forever()


def _after_upgrade(data: bytes, then_wait: bool = True) -> Behaviour:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key) + data)
        await writer.drain()
        if then_wait:
            await _forever()

    return behaviour


#: Opcode 0x3 is reserved (RFC 6455 5.2).
reserved_opcode = _after_upgrade(frame(0x3, b"x"))
#: A server must not mask its frames (RFC 6455 5.1).
masked_frame = _after_upgrade(frame(0x1, b"hello", mask=True))
#: A text frame whose payload is not UTF-8.
bad_utf8_text = _after_upgrade(frame(0x1, b"ok \xff\xfe"))
#: A binary frame header announcing 1 GiB, and nothing after it.
huge_frame = _after_upgrade(frame(0x2, length=1 << 30))


def close_with(code: int, reason: bytes = b"") -> Behaviour:
    """Upgrades, sends one text message, then a close frame with ``code`` and ``reason``."""
    return _after_upgrade(frame(0x1, b"before") + close_frame(code, reason))


def trickle(interval_s: float = 1.0) -> Behaviour:
    """Upgrades, then sends one valid text frame one byte every ``interval_s``."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key))
        for byte in frame(0x1, b"slowly, slowly"):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval_s)
        await _forever()

    return behaviour


async def reset_mid_message(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    """Upgrades, sends a whole message and half of the next, then resets the connection (RST)."""
    whole = frame(0x1, b"first")
    half = frame(0x2, b"\x00" * 1000)[:500]
    writer.write(upgrade_response(key) + whole + half)
    await writer.drain()
    await asyncio.sleep(0.05)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    """Upgrades and never reads again: what we send piles up in the kernel, then in our buffer."""
    writer.write(upgrade_response(key))
    await writer.drain()
    cast(asyncio.Transport, writer.transport).pause_reading()
    await _forever()


def ping_flood(count: int) -> Behaviour:
    """Upgrades, stops reading, sends ``count`` pings of 125 bytes (a pong of 131 bytes owed for
    each), then a text message "done"."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key))
        await writer.drain()
        cast(asyncio.Transport, writer.transport).pause_reading()
        for start in range(0, count, 1000):
            stop = min(start + 1000, count)
            writer.write(b"".join(frame(0x9, b"%08d" % i + b"p" * 117) for i in range(start, stop)))
            await writer.drain()
        writer.write(frame(0x1, b"done"))
        await _forever()

    return behaviour


async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    """Upgrades, then sends small text messages as fast as the socket takes them, for ever."""
    writer.write(upgrade_response(key))
    batch = b"".join(frame(0x1, b"flood %06d" % i) for i in range(256))
    while True:
        writer.write(batch)
        await writer.drain()


def malformed_upgrade(answer: bytes) -> Behaviour:
    """Answers the upgrade with ``answer`` (a broken HTTP response) and then keeps the connection
    open, silent: a client that waits for more waits for its whole time-out."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(answer.replace(b"{accept}", accept_key(key).encode()))
        await writer.drain()
        await _forever()

    return behaviour


async def endless_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    """Answers 101 and then header lines that never end (at most 100,000 of them, as fast as the
    socket takes them), never the empty line."""
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
    for i in range(0, 100_000, 1000):
        writer.write(b"".join(b"X-Header-%06d: more\r\n" % n for n in range(i, i + 1000)))
        await writer.drain()
    await _forever()


#: Broken answers to the upgrade, each a valid 101 but for one thing.
MALFORMED_UPGRADES: dict[str, bytes] = {
    "bad_status_line": b"HTTP/1.1 1O1 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    "not_http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "bad_header_line": (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ),
    "http_1_0": (
        b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ),
    "endless_status_line": b"HTTP/1.1 101 " + b"x" * 20_000,
    "header_line_too_long": b"HTTP/1.1 101 Switching Protocols\r\nX-Long: " + b"y" * 20_000,
}


def fragments_then(
    parts: list[bytes], after: bytes = b"", *, before: bytes = b"", text: bool = True, chunk: int = 4096
) -> Behaviour:
    """Upgrades, sends ``before`` (whole frames), then one message in the fragments ``parts``
    (``chunk`` frames per write), then ``after`` (more frames)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key) + before)
        last = len(parts) - 1
        frames = (
            frame((0x1 if text else 0x2) if i == 0 else 0x0, part, fin=i == last)
            for i, part in enumerate(parts)
        )
        batch: list[bytes] = []
        for one in frames:
            batch.append(one)
            if len(batch) >= chunk:
                writer.write(b"".join(batch))
                batch.clear()
                await writer.drain()
        writer.write(b"".join(batch) + after)
        await writer.drain()
        await _forever()

    return behaviour


async def endless_empty_continuations(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str
) -> None:
    """Upgrades, starts a text message ("a", not final), then sends empty, non-final continuation
    frames as fast as the socket takes them (at most 4,000,000: 8 MB), never the last one."""
    writer.write(upgrade_response(key) + frame(0x1, b"a", fin=False))
    batch = frame(0x0, b"", fin=False) * 4000
    for _ in range(1000):
        writer.write(batch)
        await writer.drain()
    await _forever()


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (masked) frame from the client: (opcode, unmasked payload)."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    key = await reader.readexactly(4) if head[1] & 0x80 else b"\0\0\0\0"
    payload = await reader.readexactly(length)
    return head[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def recording_close(behaviour: Behaviour, codes: list[int]) -> Behaviour:
    """``behaviour``, then (as it waits) the close code of the client's close frame appended to
    ``codes``: what the client told the peer. Reads at most 100 frames."""

    async def recorded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        task = asyncio.ensure_future(behaviour(reader, writer, key))
        try:
            for _ in range(100):
                opcode, payload = await read_client_frame(reader)
                if opcode == 0x8:
                    codes.append(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005)
                    break
            await task
        finally:
            task.cancel()

    return recorded


async def until_close_frame(reader: asyncio.StreamReader) -> bool:
    """Read the client's frames up to its close frame: whether it came within 100 frames."""
    for _ in range(100):
        opcode, _ = await read_client_frame(reader)
        if opcode == 0x8:
            return True
    return False


def answers_our_close(chunks: list[bytes], after: list[bytes]) -> Behaviour:
    """Upgrades, waits for the client's close frame, answers it with ``chunks`` written 20 ms
    apart, ends the TCP connection, and appends to ``after`` what the client sent after its close
    frame (until its end of stream, at most 2 s)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key))
        await writer.drain()
        await until_close_frame(reader)
        for i, chunk in enumerate(chunks):
            if i:
                await asyncio.sleep(0.02)
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        after.append(await asyncio.wait_for(reader.read(), 2.0))

    return behaviour


def answers_then_hangs(answered: int) -> Behaviour:
    """Completes the first ``answered`` upgrades (each then answers the client's close frame with
    its own), and reads every later upgrade request without ever answering it: a server that
    stopped answering part-way through a run."""
    served = [0]

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        if served[0] >= answered:
            await _forever()
        served[0] += 1
        writer.write(upgrade_response(key))
        await writer.drain()
        if await until_close_frame(reader):
            writer.write(close_frame(1000))
            await writer.drain()

    return behaviour


def echo_then_hang(stop_after_s: float, first_delay_s: float = 0.0) -> Behaviour:
    """Upgrades and echoes text frames, the very first answer of the server ``first_delay_s``
    late; from ``stop_after_s`` after it was made, it reads and never answers again: a server
    that hangs part-way, perhaps after one slow early answer."""
    made = time.monotonic()
    first = [True]

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key))
        await writer.drain()
        for _ in range(1_000_000):
            opcode, payload = await read_client_frame(reader)
            if opcode == 0x8:
                writer.write(close_frame(1000))
                await writer.drain()
                return
            if time.monotonic() - made >= stop_after_s:
                continue
            if first[0]:
                first[0] = False
                await asyncio.sleep(first_delay_s)
            writer.write(frame(0x1, payload))
            await writer.drain()

    return behaviour


#: A close frame (1000, "bye") between the first and the second fragment of a message.
close_between_fragments = _after_upgrade(
    frame(0x1, b"part one, ", fin=False) + close_frame(1000, b"bye") + frame(0x0, b"part two")
)
#: A binary frame whose 64-bit length has its most significant bit set (RFC 6455 5.2: must be 0).
length_msb_set = _after_upgrade(bytes([0x82, 127]) + struct.pack("!Q", (1 << 63) | 5) + b"12345")


def compressed(messages: list[bytes], window_bits: int = 9) -> Behaviour:
    """Upgrades with permessage-deflate (server_max_window_bits=``window_bits``), then sends each
    of ``messages`` as one compressed binary frame."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        extension = f"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits={window_bits}\r\n"
        writer.write(upgrade_response(key, extra=extension))
        for message in messages:
            writer.write(frame(0x2, deflated(message, window_bits), rsv1=True))
            await writer.drain()
        await _forever()

    return behaviour


def incompressible(size: int, seed: int = 14) -> bytes:
    """``size`` random bytes (the same for the same seed): deflate makes them larger."""
    return random.Random(seed).randbytes(size)


#: Every fault, by name (for the test that runs them all beside a healthy connection).
BEHAVIOURS: dict[str, Behaviour] = {
    "silent": silent,
    "html_200": html_200,
    "wrong_accept": wrong_accept,
    "reserved_opcode": reserved_opcode,
    "masked_frame": masked_frame,
    "bad_utf8_text": bad_utf8_text,
    "huge_frame": huge_frame,
    "trickle": trickle(),
    "reset_mid_message": reset_mid_message,
    "never_reads": never_reads,
    "flood": flood,
    "ping_flood": ping_flood(5_000),
    "close_1005": close_with(1005),
    "bad_header_line": malformed_upgrade(MALFORMED_UPGRADES["bad_header_line"]),
    "endless_headers": endless_headers,
    "endless_empty_continuations": endless_empty_continuations,
    "close_between_fragments": close_between_fragments,
    "length_msb_set": length_msb_set,
}


# --- the server -------------------------------------------------------------------------------


class HostileServer:
    """A TCP server on 127.0.0.1:0 that reads one HTTP request per connection and then runs
    ``behaviour``. ``rcvbuf`` shrinks the accepted sockets' receive buffer (for never_reads)."""

    def __init__(self, behaviour: Behaviour, *, rcvbuf: int | None = None) -> None:
        self.behaviour = behaviour
        self.rcvbuf = rcvbuf
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def __aenter__(self) -> HostileServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf is not None:  # inherited by accepted sockets; must be set before listen
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._handle, sock=sock, limit=1 << 16)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            key = ""
            while True:  # the request: header lines up to the empty one
                line = await reader.readline()
                if not line or line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip()
            await self.behaviour(reader, writer, key)
        except (ConnectionError, asyncio.CancelledError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()


class AcceptThenClose:
    """A TCP server on 127.0.0.1:0, in a thread of its own, that closes every connection right
    after accepting it (``after_request=False``) or once it has read the HTTP request. A context
    manager (sync) with ``.url`` and ``.accepted``; the thread ends when the block does."""

    def __init__(self, *, after_request: bool = False) -> None:
        self.after_request = after_request
        self.accepted = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)  # the thread checks for the end of the block this often
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="accept-then-close", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def __enter__(self) -> AcceptThenClose:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with conn:
                if self.after_request:
                    conn.settimeout(2.0)
                    data = b""
                    with contextlib.suppress(OSError):
                        while b"\r\n\r\n" not in data and len(data) < 65536:
                            chunk = conn.recv(4096)
                            if not chunk:
                                break
                            data += chunk
