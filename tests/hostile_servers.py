"""Purpose-built broken servers for the hardening tests: raw asyncio TCP servers on 127.0.0.1,
port 0, speaking just enough HTTP and WebSocket to misbehave in one precise way.

``HostileServer(behaviour)`` is an async context manager with ``.url``; ``behaviour`` is a
coroutine ``(reader, writer, key) -> None`` run per connection after the HTTP request has been
read (``key`` is its ``Sec-WebSocket-Key``). Each behaviour below is one fault; ``BEHAVIOURS``
names them for the test that runs them all at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import cast

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "HostileServer",
    "accept_key",
    "close_frame",
    "frame",
    "ping_flood",
]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a request's Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = False, length: int | None = None
) -> bytes:
    """One frame as a server would send it (unmasked unless ``mask``); ``length`` overrides the
    announced payload length (to announce what is never sent)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
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


def upgrade_response(key: str, accept: str | None = None) -> bytes:
    """A 101 answer; ``accept`` replaces the correct Sec-WebSocket-Accept."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept or accept_key(key)}\r\n\r\n"
    ).encode()


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
