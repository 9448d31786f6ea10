"""The client against real servers on 127.0.0.1: every return code and error class for real."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from certs_fixtures import closed_port
from conftest import scaled

from runner.client import USER_AGENT, ConnectOptions, ErrorKind, WebSocketClient
from runner.server import EmbeddedServer

Arun = Callable[[Callable[[], Any]], Any]


def test_echo_text_and_binary(arun: Arun) -> None:
    """write returns the payload's byte count; text comes back as str, binary as bytes."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo")
            assert sock >= 0, client.last_error()
            before = time.monotonic_ns()
            assert client.write(sock, "héllo") == len("héllo".encode())
            assert client.last_write_ns(sock) >= before
            text = await client.read(sock, scaled(2))
            assert (text.rc, text.data) == (0, "héllo")
            assert before <= text.received_ns <= time.monotonic_ns()
            assert client.write(sock, b"\x00\x01") == 2
            binary = await client.read(sock, scaled(2))
            assert (binary.rc, binary.data) == (0, b"\x00\x01")
            timing = client.timing(sock)
            assert timing.tcp_ns > 0 and timing.upgrade_ns > 0 and timing.tls_ns == 0
            assert timing.total_ns >= timing.tcp_ns + timing.upgrade_ns
            assert client.tls_status(sock) is None
            assert await client.close(sock) == 0

    arun(body)


def test_refused_port_is_network_error(arun: Arun) -> None:
    """A closed port gives -1 and 'network error: connection refused to 127.0.0.1:PORT'."""

    async def body() -> None:
        port = closed_port()
        client = WebSocketClient()
        assert await client.open(f"ws://127.0.0.1:{port}/") == -1
        err = client.last_error()
        assert err is not None and err.kind is ErrorKind.NETWORK and err.rc == -1
        assert err.text == f"network error: connection refused to 127.0.0.1:{port}"

    arun(body)


def test_hanging_listener_times_out(arun: Arun) -> None:
    """A server that accepts TCP but never answers gives -2 within the open's time-out."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            start = time.monotonic()
            assert await client.open(server.hang_url, ConnectOptions(timeout_s=scaled(0.3))) == -2
            assert time.monotonic() - start < scaled(0.3) + 0.5
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.TIMEOUT and err.rc == -2
            assert "HTTP upgrade" in err.text

    arun(body)


def test_bad_scheme_and_bad_syntax(arun: Arun) -> None:
    """http:// is an unsupported scheme and 'ws://:80' an invalid url, both -1."""

    async def body() -> None:
        client = WebSocketClient()
        assert await client.open("http://127.0.0.1/") == -1
        assert client.last_error().kind is ErrorKind.UNSUPPORTED_SCHEME  # type: ignore[union-attr]
        assert await client.open("ws://:80/") == -1
        assert client.last_error().kind is ErrorKind.INVALID_URL  # type: ignore[union-attr]

    arun(body)


def test_upgrade_rejected_with_status(arun: Arun) -> None:
    """An HTTP 403 answer to the upgrade gives -1 and 'handshake rejected: HTTP 403'."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            assert await client.open(server.url + "/status/403") == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.HANDSHAKE_REJECTED
            assert err.text.startswith("handshake rejected: HTTP 403")

    arun(body)


def test_no_free_sockets(arun: Arun) -> None:
    """When the process is out of file descriptors (EMFILE), open gives -1 'no more free sockets'."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            probe = socket.socket()
            lowest_free = probe.fileno()
            probe.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            try:
                rc = await client.open(server.url + "/echo")
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            assert rc == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.NO_FREE_SOCKETS, err

    arun(body)


def test_peer_close_after_messages(arun: Arun) -> None:
    """Messages sent before the peer's close are read first (rc 0), then rc 1 with the code."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/push?rate=1000&count=3")
            assert sock >= 0
            first = await client.read(sock, scaled(2))
            assert first.rc == 0 and json.loads(first.data)["seq"] == 0  # type: ignore[arg-type]
            closing = await client.open(server.url + "/close?code=4001&reason=bye")
            assert client.write(closing, "x") == 1
            result = await client.read(closing, scaled(2))
            assert (result.rc, result.close_code) == (1, 4001)
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.CLOSED and "4001 (bye)" in err.text
            assert client.write(closing, "again") == -1
            assert await client.close(closing) == 0

    arun(body)


def test_messages_queued_before_close_are_delivered(arun: Arun) -> None:
    """A message that arrived together with the close frame is read before rc 1."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/push?rate=1000&count=2")
            assert sock >= 0
            for seq in range(2):
                result = await client.read(sock, scaled(2))
                assert result.rc == 0 and json.loads(result.data)["seq"] == seq  # type: ignore[arg-type]

    arun(body)


def test_peer_closes_mid_read(arun: Arun) -> None:
    """A read that is waiting when the peer closes returns 1."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/close?code=4002")
            assert sock >= 0
            client.write(sock, "close now")  # the server closes after its first message
            result = await client.read(sock, None)
            assert (result.rc, result.close_code) == (1, 4002)

    arun(body)


def test_read_timeout(arun: Arun) -> None:
    """A read with nothing to read gives -2 after its time-out, and the socket stays usable."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo")
            start = time.monotonic()
            assert (await client.read(sock, scaled(0.1))).rc == -2
            assert scaled(0.1) - 0.005 <= time.monotonic() - start < scaled(0.1) + 0.5  # uvloop: ms timers
            assert client.last_error().kind is ErrorKind.TIMEOUT  # type: ignore[union-attr]
            assert (await client.read(sock, 0)).rc == -2
            client.write(sock, "still open")
            assert (await client.read(sock, scaled(2))).data == "still open"

    arun(body)


def test_unknown_socket(arun: Arun) -> None:
    """write, read, ping and close on a socket number never opened give -1."""

    async def body() -> None:
        client = WebSocketClient()
        assert client.write(7, "x") == -1
        assert client.last_error().kind is ErrorKind.UNKNOWN_SOCKET  # type: ignore[union-attr]
        assert (await client.read(7, 0.1)).rc == -1
        assert (await client.ping(7, 0.1)).rc == -1
        assert await client.close(7) == -1

    arun(body)


def test_headers_overwrite_defaults(arun: Arun) -> None:
    """Option headers are sent, and overwrite defaults such as User-Agent; Origin and subprotocols too."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            plain = await client.open(server.url + "/headers")
            client.write(plain, "?")
            assert json.loads((await client.read(plain, scaled(2))).data)["User-Agent"] == USER_AGENT  # type: ignore[arg-type]
            opts = ConnectOptions(
                headers=(("User-Agent", "my special user agent"), ("X-Token", "t1")),
                origin="https://origin.example",
            )
            sock = await client.open(server.url + "/headers", opts)
            client.write(sock, "?")
            seen = json.loads((await client.read(sock, scaled(2))).data)  # type: ignore[arg-type]
            assert seen["User-Agent"] == "my special user agent"
            assert seen["X-Token"] == "t1" and seen["Origin"] == "https://origin.example"
            assert "Sec-WebSocket-Extensions" not in seen  # compression is off by default

    arun(body)


def test_compression_on_by_option(arun: Arun) -> None:
    """compression=True negotiates permessage-deflate and messages still round-trip."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/headers", ConnectOptions(compression=True))
            client.write(sock, "?" * 1000)
            seen = json.loads((await client.read(sock, scaled(2))).data)  # type: ignore[arg-type]
            assert "permessage-deflate" in seen["Sec-WebSocket-Extensions"]
            client.write(sock, "z" * 5000)
            assert (await client.read(sock, scaled(2))).data == "z" * 5000

    arun(body)


def test_max_message_size(arun: Arun) -> None:
    """A message larger than max_message_size fails the read with -1 (protocol error)."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo", ConnectOptions(max_message_size=100))
            client.write(sock, "a" * 50)
            assert (await client.read(sock, scaled(2))).rc == 0
            client.write(sock, "b" * 200)
            assert (await client.read(sock, scaled(2))).rc == -1
            err = client.last_error()
            assert (
                err is not None
                and err.kind is ErrorKind.PROTOCOL
                and "exceeds limit of 100 bytes" in err.text
            )

    arun(body)


def test_ping_rtt(arun: Arun) -> None:
    """ping returns rc 0 with a positive round-trip time below the time-out."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo")
            result = await client.ping(sock, scaled(2))
            assert result.rc == 0 and 0 < result.rtt_ns < scaled(2) * 1e9

    arun(body)


def test_source_address(arun: Arun) -> None:
    """source_address binds before connecting; an address not on this host is an argument error."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo", ConnectOptions(source_address="127.0.0.2"))
            assert sock >= 0, client.last_error()
            conn = client.connection(sock)
            assert conn is not None and conn.transport.get_extra_info("sockname")[0] == "127.0.0.2"  # type: ignore[union-attr]
            assert await client.open(server.url + "/echo", ConnectOptions(source_address="192.0.2.1")) == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.ARGUMENT and "192.0.2.1" in err.text

    arun(body)


def test_aclose_closes_everything(arun: Arun) -> None:
    """aclose closes every open socket; the numbers are unknown afterwards."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            socks = [await client.open(server.url + "/echo") for _ in range(3)]
            assert socks == sorted(set(socks)) and client.open_sockets == 3
            await client.aclose()
            assert client.open_sockets == 0 and client.write(socks[0], "x") == -1

    arun(body)


def test_read_timeouts_after_longer_and_shorter_ones(arun: Arun) -> None:
    """Each read keeps its own time-out although one timer per connection is reused."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo")
            client.write(sock, "quick")
            assert (await client.read(sock, scaled(5))).rc == 0  # leaves a timer armed far ahead
            start = time.monotonic()
            assert (await client.read(sock, 0.1)).rc == -2  # must not wait for the old timer
            assert time.monotonic() - start < 0.1 + 0.3
            start = time.monotonic()
            assert (await client.read(sock, 0.3)).rc == -2  # a later deadline than the armed one
            assert 0.3 - 0.005 <= time.monotonic() - start < 0.3 + 0.3

    arun(body)


def test_drain_waits_while_peer_does_not_read(arun: Arun) -> None:
    """drain blocks while the send buffer is above its high-water mark (the peer is not reading)."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient(send_buffer_limit=1 << 30)  # refusal: test_hostile_servers
            sock = await client.open(server.url + "/slow?delay=30")
            await client.drain(sock)  # nothing buffered yet: returns at once
            chunk = b"\0" * (1 << 20)
            for _ in range(48):
                assert client.write(sock, chunk) == len(chunk)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.drain(sock), 0.2)
            await client.close(sock, timeout_s=0.1)

    arun(body)


def test_timer_heap_runs_due_callbacks_in_order_and_forgets_cancelled_ones(arun: Arun) -> None:
    """The opens' deadlines (``runner.client.timers``): callbacks run in deadline order, a
    cancelled one never runs and lets go of what it referred to at once (no loop timer left
    waiting for a garbage collection), and a callback that raises does not stop the others."""
    import weakref

    from runner.client.timers import TimerHeap

    class Held:
        pass

    async def body() -> None:
        loop = asyncio.get_running_loop()
        heap = TimerHeap(loop)
        ran: list[int] = []
        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        held = Held()
        gone = weakref.ref(held)
        now = loop.time()
        for i in (3, 1, 2):
            heap.call_at(now + 0.01 * i, lambda i=i: ran.append(i))
        cancelled = heap.call_at(now + 0.015, lambda held=held: ran.append(99))
        heap.call_at(now + 0.012, lambda: 1 / 0)
        cancelled.cancel()
        del held
        assert gone() is None  # released by the cancel, long before its deadline
        await asyncio.sleep(0.05)
        assert ran == [1, 2, 3]
        assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
        assert heap.pending == 0

    arun(body)


def test_timer_heap_lets_go_of_cancelled_entries_before_their_time(arun: Arun) -> None:
    """Every open leaves a cancelled deadline for the length of its time-out: once they are most
    of the heap it is rebuilt without them (held connections do not carry one each), and the
    deadlines still set run as set."""
    from runner.client.timers import TimerHeap

    async def body() -> None:
        loop = asyncio.get_running_loop()
        heap = TimerHeap(loop)
        ran: list[int] = []
        now = loop.time()
        entries = [heap.call_at(now + 30 + i, lambda: ran.append(-1)) for i in range(1000)]
        for i in range(10):
            heap.call_at(now + 0.01 + 0.002 * i, lambda i=i: ran.append(i))
        for entry in entries:
            entry.cancel()
            entry.cancel()  # a second cancel counts nothing
        assert heap.pending < 100  # not 1,010 until the 30 s time-outs fall due
        await asyncio.sleep(0.1)
        assert ran == list(range(10)) and heap.pending < 100  # (a few cancelled left: under 64, kept)

    arun(body)


def test_timer_heap_lets_go_of_sleeps_cut_before_their_time(arun: Arun) -> None:
    """A sleep cut with its user (a ``parallel`` branch's long sleep, cut each iteration) tells
    the heap nothing: 10,000 of them, an hour each, leave the heap bounded by the sleeps still
    waiting, and those still end as set."""
    from runner.client.timers import TimerHeap

    async def body() -> None:
        heap = TimerHeap(asyncio.get_running_loop())
        waiting = [heap.sleep(0.01 + 0.002 * i) for i in range(10)]
        for _ in range(10_000):
            heap.sleep(3600).cancel()
        assert heap.pending < 200  # not 10,010 until the hour is over
        done, _ = await asyncio.wait(waiting, timeout=5)
        assert len(done) == 10

    arun(body)


def test_one_client_opens_on_each_loop_it_is_used_on(node_ws_url: str) -> None:
    """A client used by one run and then another (a new event loop each, uvloop then asyncio
    and back) opens, echoes and times its opens on the loop running it, not the last one's."""
    from conftest import run_on

    client = WebSocketClient()

    async def echo() -> tuple[int, str | bytes | None, bool]:
        sock = await client.open(node_ws_url + "/echo", ConnectOptions(timeout_s=scaled(5)))
        assert sock >= 0, client.last_error()
        conn = client.connection(sock)
        assert conn is not None
        on_this_loop = conn.loop is asyncio.get_running_loop()
        client.write(sock, f"hello {sock}")
        read = await client.read(sock, scaled(5))
        await client.close(sock, scaled(2))
        return read.rc, read.data, on_this_loop

    for number, kind in enumerate(("uvloop", "asyncio", "uvloop")):
        assert run_on(kind, echo()) == (0, f"hello {number}", True)
