"""Writes are batched per loop turn (runner/client/connection.py): what a user relies on still holds.
Messages reach the server in the order they were written, also around pings and the close. A read's
latency starts when its request was handed to the kernel. Against a real raw server on 127.0.0.1
that decodes every client frame."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

from conftest import scaled
from hostile_servers import HostileServer, close_frame, frame, upgrade_response

from runner.client import WebSocketClient

Arun = Callable[[Callable[[], Any]], Any]


async def _read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One masked client frame (RFC 6455 5.2): its opcode and unmasked payload."""
    b0, b1 = await reader.readexactly(2)
    assert b1 & 0x80, "a client frame must be masked"
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4)
    data = await reader.readexactly(length)
    return b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))


def _recorder(seen: list[tuple[int, bytes]], done: asyncio.Event) -> Any:
    """A server that records every frame it receives, answers pings and echoes text frames
    (so a read has something to wait for), and answers the close."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key))
        try:
            while True:
                opcode, payload = await _read_client_frame(reader)
                seen.append((opcode, payload))
                if opcode == 0x9:
                    writer.write(frame(0xA, payload))
                elif opcode == 0x1 and payload.startswith(b"echo"):
                    writer.write(frame(0x1, payload))
                elif opcode == 0x8:
                    writer.write(close_frame(1000))
                    await writer.drain()
                    return
        finally:
            done.set()

    return behaviour


async def _open(server: HostileServer) -> tuple[WebSocketClient, int]:
    client = WebSocketClient()
    sock = await client.open(server.url, None)
    assert sock >= 0, client.last_error()
    return client, sock


def test_messages_pings_and_close_keep_their_order(arun: Arun) -> None:
    """Messages written in one loop turn, a ping, more messages and the close reach the server
    exactly in the order of the calls, text as text and binary as binary."""

    async def body() -> None:
        seen: list[tuple[int, bytes]] = []
        done = asyncio.Event()
        async with HostileServer(_recorder(seen, done)) as server:
            client, sock = await _open(server)
            for i in range(20):  # one loop turn: no await in between
                assert client.write(sock, f"t{i}" if i % 2 == 0 else f"b{i}".encode()) == len(f"t{i}")
            ping = await client.ping(sock, scaled(2))
            assert ping.rc == 0
            for i in range(20, 25):
                client.write(sock, f"t{i}")
            assert await client.close(sock) == 0
            await asyncio.wait_for(done.wait(), scaled(5))
        expected = [(0x1, f"t{i}".encode()) if i % 2 == 0 else (0x2, f"b{i}".encode()) for i in range(20)]
        assert seen[:20] == expected
        assert seen[20][0] == 0x9  # the ping, after every message written before it
        assert seen[21:26] == [(0x1, f"t{i}".encode()) for i in range(20, 25)]
        assert seen[26][0] == 0x8 and seen[26][1][:2] == struct.pack("!H", 1000)
        assert len(seen) == 27

    arun(body)


def test_a_message_of_a_busy_turn_is_timed_from_when_it_leaves(arun: Arun) -> None:
    """A write made early in a loop turn that then stays busy for 50 ms leaves at the end of the
    turn; ``last_write_ns`` (where a read's latency starts) is that moment, so the read's latency
    is the server's answer time, not the client's own busy time."""

    async def body() -> None:
        seen: list[tuple[int, bytes]] = []
        done = asyncio.Event()
        async with HostileServer(_recorder(seen, done)) as server:
            client, sock = await _open(server)
            assert client.write(sock, "echo 1") == 6
            assert client.send_buffered(sock) > 6  # the frame waits for the end of the turn
            time.sleep(0.05)  # the rest of this loop turn keeps the client busy
            busy_until = time.monotonic_ns()
            result = await client.read(sock, scaled(2))
            assert (result.rc, result.data) == (0, "echo 1")
            assert client.last_write_ns(sock) >= busy_until
            assert result.received_ns - client.last_write_ns(sock) < scaled(0.05) * 1e9
            assert client.send_buffered(sock) == 0

    arun(body)


def test_many_messages_in_one_turn_all_arrive(arun: Arun) -> None:
    """More than a batch's worth of bytes written in one turn (4 MiB in 64 x 64 KiB messages, the
    size at which frames are written at once) all arrive, in order and intact."""

    async def body() -> None:
        seen: list[tuple[int, bytes]] = []
        done = asyncio.Event()
        async with HostileServer(_recorder(seen, done)) as server:
            client, sock = await _open(server)
            blobs = [bytes([i]) * (64 << 10) for i in range(64)]
            for i, blob in enumerate(blobs):
                assert client.write(sock, blob) == len(blob)
                client.write(sock, f"small {i}")
                await client.drain(sock, scaled(5))
            assert await client.close(sock) == 0
            await asyncio.wait_for(done.wait(), scaled(5))
        expected: list[tuple[int, bytes]] = []
        for i, blob in enumerate(blobs):
            expected += [(0x2, blob), (0x1, f"small {i}".encode())]
        assert seen[:-1] == expected
        assert seen[-1][0] == 0x8

    arun(body)


def test_thousands_of_small_messages_in_one_turn_arrive_in_order(arun: Arun) -> None:
    """20,000 small messages written to one connection without an await in between are joined
    into few writes and all arrive, in order."""

    async def body() -> None:
        seen: list[tuple[int, bytes]] = []
        done = asyncio.Event()
        async with HostileServer(_recorder(seen, done)) as server:
            client, sock = await _open(server)
            for i in range(20_000):
                assert client.write(sock, f"m{i}") == len(f"m{i}")
            assert client.send_buffered(sock) < 2 * (64 << 10)
            assert await client.close(sock) == 0
            await asyncio.wait_for(done.wait(), scaled(10))
        assert seen[:-1] == [(0x1, f"m{i}".encode()) for i in range(20_000)]
        assert seen[-1][0] == 0x8

    arun(body)
