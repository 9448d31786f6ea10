"""Our close frame and the server's answer to it: what the connection records and sends, and how
long the close takes, are the same whether the answer is taken by the direct path
(``compat.take_close_frame``) or by websockets' parser (the direct receive path off), for the
usual answer and for odd ones, against reference servers and a hostile one."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import aiohttp_server, node_ws_server, scaled
from hostile_servers import HostileServer, answers_our_close, close_frame, frame, upgrade_response
from websockets.protocol import State

from runner.client import ConnectOptions, WebSocketClient
from runner.server import EmbeddedServer

Arun = Callable[[Callable[[], Any]], Any]


@pytest.fixture(scope="module", params=["node-ws", "aiohttp", "embedded"])
def echo_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An echo endpoint on each server implementation."""
    if request.param == "node-ws":
        with node_ws_server() as url:
            yield url + "/echo"
    elif request.param == "aiohttp":
        with aiohttp_server() as url:
            yield url + "/echo"
    else:
        with EmbeddedServer().run_in_thread() as server:
            yield server.url + "/echo"


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "websockets-parser"])
def test_our_close_ends_cleanly_on_every_server(arun: Arun, echo_url: str, direct: bool) -> None:
    """Twenty opens, a message each, and our close: the server's close code recorded (1000), the
    connection closed and gone, no parser failure, each close well inside its time-out."""

    async def body() -> list[float]:
        client = WebSocketClient(direct_receive=direct)
        took = []
        for _ in range(20):
            sock = await client.open(echo_url)
            assert sock >= 0, client.last_error()
            assert client.write(sock, "x") == 1
            assert (await client.read(sock, scaled(5))).data == "x"
            conn = client.connection(sock)
            assert conn is not None
            started = time.monotonic()
            assert await client.close(sock, 5.0) == 0
            took.append(time.monotonic() - started)
            assert conn.ws.close_rcvd is not None and conn.ws.close_rcvd.code == 1000
            assert conn.ws.state is State.CLOSED and conn.lost and conn.closed
            assert conn.parser_failure is None
        return took

    took = arun(body)
    assert max(took) < scaled(1.0), took


_CLOSE_1000 = close_frame(1000)

#: (the answer's chunks, the close code websockets records or None, the parser's failure or None)
ANSWERS: dict[str, tuple[list[bytes], int | None, str | None]] = {
    # (the connection's maxMessageSize is 16 bytes: see ``one``)
    "above the message size limit": ([close_frame(1000, b"r" * 30)], None, "PayloadTooBig"),
    "usual": ([_CLOSE_1000], 1000, None),
    "with a reason": ([close_frame(4001, b"bye")], 4001, None),
    "empty": ([frame(0x8)], 1005, None),
    "and bytes after it": ([_CLOSE_1000 + b"junk"], 1000, None),
    "after a message": ([frame(0x1, b"late") + _CLOSE_1000], 1000, None),
    "cut in two": ([_CLOSE_1000[:1], _CLOSE_1000[1:]], 1000, None),
    "a bad code": ([close_frame(999)], None, "ProtocolError"),
    "a reason not UTF-8": ([close_frame(1000, b"\xff")], None, "UnicodeDecodeError"),
    "too short": ([frame(0x8, b"\x03")], None, "ProtocolError"),
    "masked": ([frame(0x8, struct.pack("!H", 1000), mask=True)], None, "ProtocolError"),
    "a reserved bit": ([frame(0x8, struct.pack("!H", 1000), rsv1=True)], None, "ProtocolError"),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_an_odd_answer_to_our_close_is_taken_as_websockets_takes_it(arun: Arun, name: str) -> None:
    """For each answer, with the direct path on and off: the close returns 0 once the server has
    ended the connection (not at its time-out), the same close code or parser failure is
    recorded, and the client sends nothing after its close frame but the end of its stream."""
    chunks, code, failure = ANSWERS[name]

    async def one(direct: bool) -> tuple[int | None, str | None, bytes]:
        after: list[bytes] = []
        async with HostileServer(answers_our_close(chunks, after)) as server:
            client = WebSocketClient(direct_receive=direct)
            sock = await client.open(server.url, ConnectOptions(max_message_size=16))
            assert sock >= 0, client.last_error()
            conn = client.connection(sock)
            assert conn is not None
            started = time.monotonic()
            assert await client.close(sock, 5.0) == 0
            assert time.monotonic() - started < scaled(2.0)
            for _ in range(100):  # the server's task records what came after our close frame
                if after:
                    break
                await asyncio.sleep(0.02)
            assert conn.ws.state is State.CLOSED and conn.lost
            rcvd = conn.ws.close_rcvd
            failed = conn.parser_failure
            return (
                rcvd.code if rcvd is not None else None,
                type(failed).__name__ if failed is not None else None,
                after[0] if after else b"(nothing recorded)",
            )

    direct = arun(lambda: one(True))
    parser = arun(lambda: one(False))
    assert direct == parser == (code, failure, b"")


def test_a_write_after_the_server_ended_the_connection_is_refused(arun: Arun) -> None:
    """The server answers the upgrade and ends the connection at once. A write made in the loop
    turn where the client takes that end (queued behind the first write) is refused with -1
    once the connection is no longer open, never counted as sent and dropped. On asyncio's own
    loop the end of stream's half-close fails there (ENOTCONN), which used to leave the
    connection's send path open."""

    async def upgrade_and_go(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade_response(key))
        await writer.drain()
        writer.close()

    async def body() -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []
        async with HostileServer(upgrade_and_go) as server:
            for _ in range(20):
                client = WebSocketClient()
                sock = await client.open(server.url)
                assert sock >= 0, client.last_error()
                conn = client.connection(sock)
                assert conn is not None

                def second_write(
                    conn: Any = conn, client: WebSocketClient = client, sock: int = sock
                ) -> None:
                    seen.append((conn.ws.state.name, client.write(sock, "second")))

                client.write(sock, "first")
                asyncio.get_running_loop().call_soon(second_write)
                await asyncio.sleep(0.1)
                await client.aclose()
        return seen

    seen = arun(body)
    assert len(seen) == 20
    assert all(rc == -1 for state, rc in seen if state != "OPEN"), seen
    assert all(rc == 6 for state, rc in seen if state == "OPEN"), seen
