"""The client and the engine against purpose-built broken servers (tests/hostile_servers.py): each
fault gives the right return code and error text, in bounded time and bounded memory, and the
other connections carry on."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import scaled
from hostile_servers import (
    BEHAVIOURS,
    MALFORMED_UPGRADES,
    AcceptThenClose,
    HostileServer,
    answers_then_hangs,
    bad_utf8_text,
    close_between_fragments,
    close_with,
    compressed,
    deflated,
    echo_then_hang,
    endless_empty_continuations,
    endless_headers,
    flood,
    fragments_then,
    frame,
    html_200,
    huge_frame,
    incompressible,
    length_msb_set,
    malformed_upgrade,
    masked_frame,
    never_reads,
    ping_flood,
    recording_close,
    reserved_opcode,
    reset_mid_message,
    silent,
    trickle,
    wrong_accept,
)

from runner.client import ConnectOptions, ErrorKind, WebSocketClient
from runner.client.compat import MAX_FRAGMENTS
from runner.client.connection import FEED_CHUNK
from runner.engine.check import run_check
from runner.load import run_load
from runner.loader import load_scenario_text
from runner.results.result import RunResult
from runner.server import EmbeddedServer

Arun = Callable[[Callable[[], Any]], Any]
SHORT = scaled(0.3)  # the time-out of the operation under test
SLACK = scaled(0.5)  # what "ends at its time-out" may take beyond it on a busy 2-core machine


async def _open(client: WebSocketClient, server: HostileServer) -> int:
    sock = await client.open(server.url, ConnectOptions(timeout_s=scaled(2)))
    assert sock >= 0, client.last_error()
    return sock


def _error(client: WebSocketClient) -> str:
    err = client.last_error()
    assert err is not None
    return err.text


# --- the handshake ----------------------------------------------------------------------------


def test_no_handshake_answer_times_out_at_the_open_timeout(arun: Arun) -> None:
    """A server that never answers the upgrade: open gives -2 at its time-out, naming the phase."""

    async def body() -> None:
        async with HostileServer(silent) as server:
            client = WebSocketClient()
            start = time.monotonic()
            assert await client.open(server.url, ConnectOptions(timeout_s=SHORT)) == -2
            assert SHORT - 0.01 <= time.monotonic() - start < SHORT + SLACK
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.TIMEOUT
            where = f"127.0.0.1:{server.port} within {SHORT:g} s (during HTTP upgrade)"
            assert err.text == f"time-out: no connection to {where}"

    arun(body)


def _scenario(url: str, steps: str, defaults: str = "") -> Any:
    text = f"name: hostile\nconnections:\n  main:\n    url: {url}\n{defaults}steps:\n{steps}"
    return load_scenario_text(text, file="hostile.yaml")


def test_no_handshake_answer_without_timeout_ends_at_the_run_bound(arun: Arun) -> None:
    """An open without a time-out to a silent server ends at defaults.run_timeout with an honest report."""

    async def body() -> RunResult:
        async with HostileServer(silent) as server:
            scenario = _scenario(server.url, "  - open: main\n", "defaults: {run_timeout: 0.5s}\n")
            start = time.monotonic()
            result = await run_check(scenario, handle_signals=False)
            assert time.monotonic() - start < scaled(0.5) + scaled(2)
            return result

    result = arun(body)
    assert result.passed is False and result.interrupted is False
    assert result.error == (
        "run time-out: the scenario did not finish within 0.5s (step 'open main' at line 7 was still waiting)"
    )


def test_web_page_instead_of_upgrade_is_rejected(arun: Arun) -> None:
    """A 200 OK web page answering the upgrade: open gives -1 'handshake rejected: HTTP 200 OK'."""

    async def body() -> None:
        async with HostileServer(html_200) as server:
            client = WebSocketClient()
            assert await client.open(server.url, ConnectOptions(timeout_s=scaled(2))) == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.HANDSHAKE_REJECTED
            assert err.text == "handshake rejected: HTTP 200 OK"

    arun(body)


def test_wrong_accept_key_is_a_protocol_error(arun: Arun) -> None:
    """A 101 whose Sec-WebSocket-Accept is wrong: open gives -1 with a protocol error naming the header."""

    async def body() -> None:
        async with HostileServer(wrong_accept) as server:
            client = WebSocketClient()
            assert await client.open(server.url, ConnectOptions(timeout_s=scaled(2))) == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.PROTOCOL
            assert err.text.startswith("protocol error: invalid handshake response")
            assert "Sec-WebSocket-Accept" in err.text

    arun(body)


CLOSED_IN_UPGRADE = re.compile(
    r"network error: connection to 127\.0\.0\.1:(\d+) closed during the HTTP upgrade"
    r"( \(\[Errno \d+\] (Connection reset by peer|Transport endpoint is not connected)\))?"
)


@pytest.mark.parametrize("after_request", [False, True], ids=["at_once", "after_the_request"])
def test_accept_then_close_is_a_network_error_every_time(arun: Arun, after_request: bool) -> None:
    """A server (in its own thread) that accepts TCP and closes at once, or after reading the request:
    each of 150 opens gives -1 'closed during the HTTP upgrade', never an exception (it raised
    'Cannot call write() after write_eof()' about one time in three under uvloop)."""

    async def body() -> None:
        with AcceptThenClose(after_request=after_request) as server:
            client = WebSocketClient()
            start = time.monotonic()
            for _ in range(150):
                assert await client.open(server.url, ConnectOptions(timeout_s=scaled(2))) == -1
                err = client.last_error()
                assert err is not None and err.kind is ErrorKind.NETWORK
                match = CLOSED_IN_UPGRADE.fullmatch(err.text)
                assert match is not None and int(match.group(1)) == server.port, err.text
            assert time.monotonic() - start < scaled(15)
            assert client.open_sockets == 0 and server.accepted == 150

    arun(body)


def test_accept_then_close_in_a_load_run_is_counted_not_fatal(arun: Arun) -> None:
    """A load run against a server that closes every connection right after the accept: the open
    step counts rc -1 for every open with the network error text, and no internal error ends the
    run (the first such open used to stop the whole run)."""

    async def body() -> RunResult:
        with AcceptThenClose() as server:
            text = (
                f"name: accept then close\nconnections:\n  main: {{url: '{server.url}', timeout: 2s}}\n"
                "steps:\n  - open: main\n  - write: {connection: main, text: x}\n  - close: main\n"
                "load:\n  vus: 20\n  duration: 1s\n  graceful_stop: 1s\n"
            )
            scenario = load_scenario_text(text, file="accept-then-close.yaml")
            return await run_load(scenario, workers=1, handle_signals=False)

    result = arun(body)
    assert result.error == "", result.error
    assert result.passed is False
    opens = next(s for s in result.steps if s.kind == "open")
    assert opens.count >= 20 and opens.ok == 0
    assert opens.rc == {"-1": opens.count} and opens.failures == opens.count
    assert all("closed during the HTTP upgrade" in e.message for e in opens.errors), opens.errors
    assert sum(e.count for e in opens.errors) == opens.count


def test_a_server_that_stops_answering_part_way_fails_the_run(arun: Arun) -> None:
    """The server answers the first 3 upgrades and then never again (opens without a time-out):
    a few opens completed in milliseconds while every user waited for the rest of the run. This
    used to pass (the open's latency figures held only the 3 fast ones); now the open is stalled,
    the run fails with the waits in the text, and the waiting opens are counted as pending."""

    async def body() -> RunResult:
        async with HostileServer(answers_then_hangs(3)) as server:
            text = (
                f"name: stops answering\nconnections:\n  main: {{url: '{server.url}'}}\n"
                "steps:\n  - open: main\n  - close: main\n"
                "load:\n  vus: 5\n  duration: 1500ms\n  graceful_stop: 500ms\n"
                "thresholds:\n  - open main.p99 < 500ms\n  - errors.rate < 1%\n"
            )
            scenario = load_scenario_text(text, file="stops-answering.yaml")
            return await run_load(scenario, workers=1, handle_signals=False)

    result = arun(body)
    opens = next(s for s in result.steps if s.kind == "open")
    assert opens.count == 3 and opens.pending == 5, opens
    assert opens.pending_max_ms >= 1000 and opens.latency_ms is not None and opens.latency_ms.max < 500
    assert result.passed is False
    stalled = [p for p in result.problems if "stalled" in p]
    assert stalled == [
        f"'open main' (line 5) stalled: 5 still waiting when the run ended, the longest for "
        f"{opens.pending_max_ms / 1000:.1f} s, against p99 {_short(opens.latency_ms.p99)} ms and max "
        f"{_short(opens.latency_ms.max)} ms of the 3 that completed (its latency figures leave the waiting "
        "ones out)"
    ], result.problems


ECHO_LOAD = (
    "name: echo hangs\nconnections:\n  main: {{url: '{url}', timeout: 5s}}\n"
    "steps:\n  - open: main\n  - write: {{connection: main, text: hi}}\n"
    "  - read: {{connection: main, timeout: 60s}}\n  - close: main\n"
    "load:\n  vus: {vus}\n  duration: {duration}\n  graceful_stop: {grace}\n"
    "thresholds:\n  - read.p99 < 100ms\n"
)


@pytest.mark.parametrize(
    ("stop_after_s", "first_delay_s", "vus", "duration", "grace"),
    [(1.5, 1.2, 2, "3s", "500ms"), (0.3, 0.0, 5, "1s", "0s")],
    ids=["after_one_slow_answer", "short_run"],
)
def test_a_hang_is_not_hidden_by_a_slow_answer_or_a_short_run(
    arun: Arun, stop_after_s: float, first_delay_s: float, vus: int, duration: str, grace: str
) -> None:
    """The server hangs part-way through a load run: after one answer 1.2 s late (which made the
    slowest completed read as slow as most of the wait since), or 0.3 s into a 1 s run (shorter
    than the 1 s floor). Both used to pass, 'read.p99 < 100ms' included; now the read is stalled
    and the latency threshold counts the reads still waiting."""

    async def body() -> RunResult:
        async with HostileServer(echo_then_hang(stop_after_s, first_delay_s)) as server:
            text = ECHO_LOAD.format(url=server.url, vus=vus, duration=duration, grace=grace)
            return await run_load(load_scenario_text(text, file="hang.yaml"), workers=1, handle_signals=False)

    result = arun(body)
    read = next(s for s in result.steps if s.kind == "read")
    assert read.pending == vus and read.count > 0, read
    assert result.passed is False
    assert any(p.startswith("'read main' (line 7) stalled") for p in result.problems), result.problems
    p99 = next(t for t in result.thresholds if t.expression == "read.p99 < 100ms")
    assert not p99.passed and "still waiting when the run ended had waited up to" in p99.message, p99


_NOT_VALID = "did not receive a valid HTTP response: "
UPGRADE_FAILURES = {
    "bad_status_line": _NOT_VALID + "invalid status code; expected integer; got 1O1",
    "not_http": _NOT_VALID + "invalid HTTP status line: SSH-2.0-OpenSSH_9.6",
    "bad_header_line": _NOT_VALID + "invalid HTTP header line: Upgrade websocket",
    "http_1_0": _NOT_VALID + "unsupported protocol; expected HTTP/1.1: HTTP/1.0 101 Switching Protocols",
    "endless_status_line": "status line too long: a line longer than 8192 bytes",
    "header_line_too_long": _NOT_VALID + "a line longer than 8192 bytes",
    "endless_headers": _NOT_VALID + "expected no more than 128 headers",
}


@pytest.mark.parametrize("name", sorted(UPGRADE_FAILURES))
def test_malformed_upgrade_answer_fails_the_open_at_once(arun: Arun, name: str) -> None:
    """A broken answer to the upgrade (bad status line, not HTTP, a header line without a colon,
    HTTP/1.0, endless lines or headers) from a server that then stays silent: open gives -1 at
    once with what was wrong, instead of waiting for its whole time-out."""
    behaviour = endless_headers if name == "endless_headers" else malformed_upgrade(MALFORMED_UPGRADES[name])

    async def body() -> None:
        async with HostileServer(behaviour) as server:
            client = WebSocketClient()
            start = time.monotonic()
            assert await client.open(server.url, ConnectOptions(timeout_s=scaled(10))) == -1
            assert time.monotonic() - start < scaled(1)
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.PROTOCOL
            assert err.text == f"protocol error: invalid handshake response ({UPGRADE_FAILURES[name]})"

    arun(body)


def test_malformed_upgrade_answer_without_timeout_fails_the_run_at_once(arun: Arun) -> None:
    """The same with no connect time-out in a check run: the open fails at once with -1 and the
    text, instead of holding the run until defaults.run_timeout."""

    async def body() -> RunResult:
        async with HostileServer(malformed_upgrade(MALFORMED_UPGRADES["http_1_0"])) as server:
            scenario = _scenario(
                server.url, "  - open: main\n  - close: main\n", "defaults: {run_timeout: 20s}\n"
            )
            start = time.monotonic()
            result = await run_check(scenario, handle_signals=False)
            assert time.monotonic() - start < scaled(1)
            return result

    result = arun(body)
    assert result.passed is False and result.error == ""
    opens = next(s for s in result.steps if s.kind == "open")
    assert opens.rc == {"-1": 1}
    assert "protocol error: invalid handshake response (did not receive a valid HTTP response: " in (
        opens.errors[0].message
    )


def test_embedded_hang_port_gives_the_open_timeout(arun: Arun) -> None:
    """The embedded server's hang listener holds the connection on both loops, so an open with
    `timeout: 300ms` gets -2 (under uvloop it reset every connection: -1)."""

    async def body() -> RunResult:
        async with EmbeddedServer() as server:
            steps = "  - open: main\n    expect: {rc: -2}\n"
            text = (
                f"name: hang\nconnections:\n  main: {{url: '{server.hang_url}', timeout: 300ms}}\n"
                f"steps:\n{steps}"
            )
            return await run_check(load_scenario_text(text, file="hang.yaml"), handle_signals=False)

    result = arun(body)
    assert result.passed is True, [e.message for s in result.steps for e in s.errors]
    assert result.steps[0].rc == {"-2": 1}


@pytest.fixture
def wsload_serve() -> Iterator[str]:
    """`wsload serve` in a subprocess (it runs on uvloop): its hang URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        hang = ""
        for _ in range(20):
            line = proc.stdout.readline()
            if line.startswith("hang"):
                hang = line.split()[1]
                break
        assert hang.startswith("ws://127.0.0.1:"), hang
        yield hang
    finally:
        proc.terminate()
        proc.wait(scaled(10))


def test_wsload_serve_hang_port_gives_minus_two(arun: Arun, wsload_serve: str) -> None:
    """`wsload serve`'s hang port (uvloop) answers an open with `timeout: 300ms` by silence: -2 at the
    time-out, with the time-out text naming the HTTP upgrade."""

    async def body() -> None:
        client = WebSocketClient()
        start = time.monotonic()
        assert await client.open(wsload_serve, ConnectOptions(timeout_s=SHORT)) == -2
        assert SHORT - 0.01 <= time.monotonic() - start < SHORT + SLACK
        assert _error(client).endswith(f"within {SHORT:g} s (during HTTP upgrade)")

    arun(body)


# --- invalid frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "text"),
    [
        (reserved_opcode, "invalid opcode (a reserved one: 3-7 and 11-15 are not defined in RFC 6455)"),
        (masked_frame, "incorrect masking (a server must not mask its frames)"),
        (bad_utf8_text, "invalid UTF-8 in a text message (invalid start byte at byte 3)"),
    ],
    ids=["reserved_opcode", "masked_from_server", "bad_utf8_text"],
)
def test_invalid_frame_fails_the_read(arun: Arun, behaviour: Any, text: str) -> None:
    """An invalid frame (reserved opcode, masked by the server, text not UTF-8): read gives -1 at once
    with a protocol error that says which, and the socket answers -1 from then on."""

    async def body() -> None:
        async with HostileServer(behaviour) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            start = time.monotonic()
            assert (await client.read(sock, scaled(2))).rc == -1
            assert time.monotonic() - start < SLACK
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.PROTOCOL
            assert err.text == f"protocol error: socket {sock}: {text}"
            assert (await client.read(sock, scaled(2))).rc == -1
            assert client.write(sock, "after") == -1
            assert await client.close(sock, SHORT) == 0

    arun(body)


def test_one_gigabyte_frame_header_fails_fast_without_allocating(arun: Arun) -> None:
    """A header announcing 1 GiB fails the read at once (-1, over the size limit) and nothing near
    that size is ever allocated."""

    async def body() -> None:
        async with HostileServer(huge_frame) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            tracemalloc.start()
            try:
                start = time.monotonic()
                result = await client.read(sock, scaled(2))
                elapsed = time.monotonic() - start
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert result.rc == -1 and elapsed < SLACK
            assert peak < 4 << 20, peak
            assert client.queued(sock) == (0, 0)
            assert _error(client) == (
                f"protocol error: socket {sock}: frame with 1073741824 bytes exceeds limit of 1048576 bytes"
            )

    arun(body)


def test_64bit_length_with_the_top_bit_set_is_a_protocol_error(arun: Arun) -> None:
    """A 64-bit frame length with its most significant bit set: read gives -1 with a protocol error
    and we close with 1002, not 'too big' with 1009 (RFC 6455 5.2)."""
    codes: list[int] = []

    async def body() -> None:
        async with HostileServer(recording_close(length_msb_set, codes)) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            start = time.monotonic()
            assert (await client.read(sock, scaled(2))).rc == -1
            assert time.monotonic() - start < SLACK
            assert _error(client) == (
                f"protocol error: socket {sock}: invalid frame length: the most significant bit of a "
                "64-bit length must be 0 (RFC 6455 5.2)"
            )
            for _ in range(100):  # the close frame reaches the server
                if codes:
                    break
                await asyncio.sleep(0.01)
            assert codes == [1002]
            assert await client.close(sock, SHORT) == 0

    arun(body)


# --- fragmented messages ----------------------------------------------------------------------


def test_endless_empty_continuation_frames_end_the_read_in_bounded_memory(arun: Arun) -> None:
    """A message continued by endless empty fragments: read gives -1 once it has more than
    MAX_FRAGMENTS frames ('fragmented message exceeds limit of 65536 frames', close 1009) instead of
    waiting for its time-out while memory grows (it took 43 s to give -2 at a 3 s time-out, with
    20 MB held); memory stays under 6 MiB (parsed frames of one 16 KiB slice at a time)."""
    codes: list[int] = []

    async def body() -> None:
        async with HostileServer(recording_close(endless_empty_continuations, codes)) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            tracemalloc.start()
            try:
                start = time.monotonic()
                result = await client.read(sock, scaled(10))
                elapsed = time.monotonic() - start
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert result.rc == -1 and elapsed < scaled(3), (result, elapsed)
            assert peak < 6 << 20, peak
            assert _error(client) == (
                f"protocol error: socket {sock}: fragmented message exceeds limit of {MAX_FRAGMENTS} frames"
            )
            for _ in range(100):
                if codes:
                    break
                await asyncio.sleep(0.01)
            assert codes == [1009]
            assert await client.close(sock, SHORT) == 0

    arun(body)


def test_small_fragments_cost_no_memory_per_fragment(arun: Arun) -> None:
    """A 480,000-byte message in 60,000 fragments of 8 bytes is read whole, and the memory it takes
    stays under 5 times its size (about 2.9 times: the gathered bytes, the text, one slice of
    parsed frames); a list of fragments took 17 times (8.1 MB)."""
    size, count = 8, 60_000
    parts = [b"%07d|" % i for i in range(count)]
    assert all(len(p) == size for p in parts)

    async def body() -> None:
        async with HostileServer(fragments_then(parts, frame(0x1, b"after"), chunk=2048)) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            tracemalloc.start()
            try:
                result = await client.read(sock, scaled(10))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert result.rc == 0 and result.data == b"".join(parts).decode()
            assert peak < 5 * size * count, peak
            after = await client.read(sock, scaled(2))
            assert (after.rc, after.data) == (0, "after")
            assert await client.close(sock, SHORT) == 0

    arun(body)


def test_fragments_count_toward_the_message_size_limit(arun: Arun) -> None:
    """2 MiB in 64 KiB fragments against the 1 MiB limit: read gives -1 with the same 'exceeds limit'
    text as one big frame, and we close with 1009; nothing of it is queued."""
    codes: list[int] = []
    parts = [b"f" * (64 << 10)] * 32

    async def body() -> None:
        async with HostileServer(recording_close(fragments_then(parts, chunk=4), codes)) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            assert (await client.read(sock, scaled(5))).rc == -1
            assert _error(client) == (
                f"protocol error: socket {sock}: frame with 65536 bytes after reading 1048576 bytes "
                "exceeds limit of 1048576 bytes"
            )
            assert client.queued(sock) == (0, 0)
            for _ in range(100):
                if codes:
                    break
                await asyncio.sleep(0.01)
            assert codes == [1009]

    arun(body)


def test_fragments_in_progress_count_toward_the_queue_limit(arun: Arun) -> None:
    """Unread messages plus the fragments of the message still arriving stay within the queue's
    byte limit (reading pauses; it went on until the 1 MB message was whole), and everything is
    read in order once we read."""
    whole = [frame(0x1, b"%d" % i * 10_000) for i in range(5)]  # 50,000 bytes queued
    parts = [b"p" * 1024] * 1000  # then a 1,024,000-byte message in 1 KiB fragments

    async def body() -> None:
        async with HostileServer(fragments_then(parts, before=b"".join(whole), chunk=16)) as server:
            limit = 64 << 10
            client = WebSocketClient(max_queued_bytes=limit)
            sock = await _open(client, server)
            await asyncio.sleep(SHORT)
            messages, held = client.queued(sock)
            assert messages == 5
            assert held <= limit + FEED_CHUNK + 1024, held
            await asyncio.sleep(SHORT)
            assert client.queued(sock) == (messages, held), "reading did not pause"
            for i in range(5):
                result = await client.read(sock, scaled(2))
                assert (result.rc, result.data) == (0, str(i) * 10_000)
            last = await client.read(sock, scaled(5))
            assert last.rc == 0 and last.data == "p" * 1_024_000
            assert await client.close(sock, SHORT) == 0

    arun(body)


def test_close_frame_between_fragments_is_the_peers_close(arun: Arun) -> None:
    """A close frame between two fragments of a message (control frames may come between fragments,
    RFC 6455 5.4): read gives 1 with the peer's code, and the text says the message was cut."""

    async def body() -> None:
        async with HostileServer(close_between_fragments) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            result = await client.read(sock, scaled(2))
            assert (result.rc, result.close_code) == (1, 1000)
            assert _error(client) == (
                f"connection closed: peer closed socket {sock} with code 1000 (bye), "
                "in the middle of a fragmented message (10 bytes dropped)"
            )
            assert await client.close(sock, SHORT) == 0

    arun(body)


MIB = 1 << 20


@pytest.mark.parametrize(
    ("make", "rc"),
    [
        (lambda: incompressible(MIB), 0),
        (lambda: incompressible(MIB + 1), -1),
        (lambda: b"\0" * (16 * MIB), -1),
    ],
    ids=["incompressible_at_the_limit", "incompressible_one_byte_over", "zip_bomb_16MiB"],
)
def test_compressed_message_is_limited_after_decompression(
    arun: Arun, make: Callable[[], bytes], rc: int
) -> None:
    """With permessage-deflate (server window 9 bits) maxMessageSize limits the message, not the
    frame: a 1 MiB incompressible message, whose frame is larger than 1 MiB, is read (0; it was
    refused); one byte more, or 16 MiB of zeros in a small frame, gives -1 'exceeds limit ... once
    decompressed', and we close with 1009."""
    message = make()
    codes: list[int] = []
    wire = len(deflated(message, 9))
    if message[:1] != b"\0":
        assert wire > len(message) > MIB - 1  # the frame on the wire is larger than the limit

    async def body() -> None:
        async with HostileServer(recording_close(compressed([message, b"next"]), codes)) as server:
            client = WebSocketClient()
            options = ConnectOptions(timeout_s=scaled(2), compression=True, max_message_size=MIB)
            sock = await client.open(server.url, options)
            assert sock >= 0, client.last_error()
            result = await client.read(sock, scaled(5))
            assert result.rc == rc
            if rc == 0:
                assert result.data == message
                after = await client.read(sock, scaled(5))
                assert (after.rc, after.data) == (0, b"next")
            else:
                assert _error(client) == (
                    f"protocol error: socket {sock}: frame exceeds limit of {MIB} bytes once decompressed"
                )
                for _ in range(100):
                    if codes:
                        break
                    await asyncio.sleep(0.01)
                assert codes == [1009]
            assert await client.close(sock, SHORT) == 0

    arun(body)


def test_trickled_frame_times_out_at_the_read_timeout(arun: Arun) -> None:
    """A frame trickled a byte a second: read gives -2 at its time-out, not a hang; the socket stays open."""

    async def body() -> None:
        async with HostileServer(trickle(1.0)) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            for _ in range(2):
                start = time.monotonic()
                assert (await client.read(sock, SHORT)).rc == -2
                assert SHORT - 0.01 <= time.monotonic() - start < SHORT + SLACK
                assert _error(client) == f"time-out: no message on socket {sock} within {SHORT:g} s"
            assert client.is_open(sock)
            assert await client.close(sock, SHORT) == 0

    arun(body)


MID_FRAME = (
    "(connection reset by peer), in the middle of a frame (stream ends after 496 bytes, expected 1000 bytes)"
)


def test_reset_mid_message_after_a_whole_one(arun: Arun) -> None:
    """A server resetting (RST) in the middle of a message: the whole message before it is read (0),
    then read gives 1 'without a close frame (connection reset by peer), in the middle of a frame' at once."""

    async def body() -> None:
        async with HostileServer(reset_mid_message) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            first = await client.read(sock, scaled(2))
            assert (first.rc, first.data) == (0, "first")
            start = time.monotonic()
            second = await client.read(sock, scaled(2))
            assert second.rc == 1 and second.close_code is None
            assert time.monotonic() - start < SLACK
            text = _error(client)
            assert text.startswith(f"connection closed: peer closed socket {sock} without a close frame")
            assert text.endswith(MID_FRAME)
            assert await client.close(sock, SHORT) == 0

    arun(body)


# --- a peer that does not read, a peer that floods --------------------------------------------


def test_peer_that_never_reads_bounds_the_send_buffer(arun: Arun) -> None:
    """Writes to a peer that never reads: the send buffer stays under its limit plus one message, a
    write above it gives -1 'send buffer full', and drain gives -2 at its time-out."""

    async def body() -> None:
        async with HostileServer(never_reads, rcvbuf=4096) as server:
            limit, size = 1 << 20, 256 << 10
            client = WebSocketClient(send_buffer_limit=limit)
            sock = await _open(client, server)
            chunk = b"\0" * size
            highest, refused = 0, None
            for i in range(400):  # kernel buffers take a few MiB first
                rc = client.write(sock, chunk)
                highest = max(highest, client.send_buffered(sock))
                if rc == -1:
                    refused = i
                    break
                assert rc == size
                await asyncio.sleep(0)
            assert refused is not None, "writes never refused"
            assert highest <= limit + size + 64, highest
            assert client.send_blocked == 1  # the client's own count of its paused sockets
            assert _error(client).startswith("network error: send buffer full: ")
            assert _error(client).endswith(f"bytes not yet sent on socket {sock} (the peer is not reading)")
            start = time.monotonic()
            assert await client.drain(sock, SHORT) == -2
            assert SHORT - 0.01 <= time.monotonic() - start < SHORT + SLACK
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.TIMEOUT
            assert f"still not sent on socket {sock} after {SHORT:g} s (the peer is not reading)" in err.text
            start = time.monotonic()
            assert await client.close(sock, SHORT) == 0
            assert time.monotonic() - start < SHORT + SLACK
            assert client.send_blocked == 0 and client.open_sockets == 0

    arun(body)


def test_a_connection_lost_while_its_writes_wait_is_no_longer_counted_as_blocked(arun: Arun) -> None:
    """A peer that stops reading and then goes away: while the socket waits to send it counts in
    ``send_blocked``; once the connection is lost nothing waits to be sent, so it does not, though
    the socket stays in the client's table until it is closed."""

    async def body() -> None:
        client = WebSocketClient()
        async with HostileServer(never_reads, rcvbuf=4096) as server:
            sock = await _open(client, server)
            chunk = b"\0" * (256 << 10)
            for _ in range(400):  # kernel buffers take a few MiB first
                if client.write(sock, chunk) < 0 or client.send_blocked:
                    break
                await asyncio.sleep(0)
            assert client.send_blocked == 1
        # the server has aborted every connection on leaving its block
        for _ in range(100):
            if client.send_blocked == 0:
                break
            await asyncio.sleep(0.01)
        assert client.send_blocked == 0 and client.open_sockets == 1
        assert await client.close(sock, SHORT) == 0
        assert client.open_sockets == 0

    arun(body)


def test_a_load_run_counts_the_connections_a_peer_does_not_read(arun: Arun) -> None:
    """The generator's health counts, each second, the connections whose send buffer is above
    its high-water mark: here every user's, for the seconds its write waits to drain, and none
    once they have closed. (The count is the client's own, kept as connections pause and
    resume, not a walk over every user each second.)"""
    text = (
        "name: not read\nconnections: {main: {url: /, timeout: 5s}}\ndefaults: {read_timeout: 2s}\n"
        "steps:\n  - open: main\n  - repeat:\n      times: 200\n      steps:\n"
        "        - write: {connection: main, binary: {size: 262144}}\n"
        "  - close: {connection: main, timeout: 200ms}\n"
        "load: {vus: 3, iterations: 1, duration: 8s, graceful_stop: 1s}\n"
    )

    async def body() -> RunResult:
        async with HostileServer(never_reads, rcvbuf=4096) as server:
            scenario = load_scenario_text(f"target: {server.url}\n{text}", "not-read.yaml")
            return await run_load(scenario, workers=1, handle_signals=False)

    result: RunResult = arun(body)
    (write,) = [s for s in result.steps if s.kind == "write"]
    assert write.failures == 3  # each user's write gave up after read_timeout: the buffer never drained
    blocked = [s.send_blocked for s in result.timeseries if s.send_blocked is not None]
    assert max(blocked) == 3 and blocked[-1] == 0, blocked
    generator = result.settings.load.generator if result.settings.load else None
    assert generator is not None and max(w.send_blocked_max for w in generator.workers) == 3


def test_peer_that_pings_without_reading_is_owed_one_pong_at_a_time(arun: Arun) -> None:
    """A peer that sends 100,000 pings (13 MiB of pongs owed) and never reads: our send buffer stays
    near its high-water mark (64 KiB) instead of holding every pong, and the message after the
    pings is still read."""

    async def body() -> None:
        async with HostileServer(ping_flood(100_000), rcvbuf=4096) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            result = await client.read(sock, scaled(20))
            assert (result.rc, result.data) == (0, "done")
            assert client.send_buffered(sock) < 128 << 10, client.send_buffered(sock)
            assert client.is_open(sock)
            assert await client.close(sock, SHORT) == 0

    arun(body)


def test_write_step_to_a_peer_that_never_reads_fails_in_time(arun: Arun) -> None:
    """A write step to a peer that never reads ends after defaults.read_timeout with -1 and a clear text."""

    async def body() -> RunResult:
        async with HostileServer(never_reads, rcvbuf=4096) as server:
            steps = (
                "  - open: main\n"
                "  - repeat:\n      times: 100\n      steps:\n"
                "        - write: {binary: {size: 1MiB}}\n"
                "  - close: main\n"
            )
            scenario = _scenario(server.url, steps, "defaults: {read_timeout: 0.3s, run_timeout: 20s}\n")
            start = time.monotonic()
            result = await run_check(scenario, handle_signals=False)
            assert time.monotonic() - start < scaled(8)
            return result

    result = arun(body)
    assert result.passed is False and result.error == ""
    write = next(s for s in result.steps if s.kind == "write")
    assert write.failures == 1 and write.rc == {"-1": 1}
    assert "still not sent on the socket after 0.3 s (the peer is not reading)" in write.errors[0].message


def test_flood_pauses_reading_and_bounds_the_queue(arun: Arun) -> None:
    """A server sending faster than we read: the unread queue stays bounded (reading pauses), and
    every message still arrives, in order, once we read."""

    async def body() -> None:
        async with HostileServer(flood) as server:
            limit = 100
            client = WebSocketClient(max_queued_messages=limit, max_queued_bytes=1 << 20)
            sock = await _open(client, server)
            bound = limit + FEED_CHUNK // 13  # 13 bytes: the smallest frame this server sends
            await asyncio.sleep(SHORT)
            first, _ = client.queued(sock)
            assert limit < first <= bound
            await asyncio.sleep(SHORT)
            assert client.queued(sock)[0] == first, "reading did not pause"
            for i in range(3000):  # several pause/resume cycles
                result = await client.read(sock, scaled(2))
                assert (result.rc, result.data) == (0, f"flood {i % 256:06d}")
                assert client.queued(sock)[0] <= bound
            assert await client.close(sock, SHORT) == 0

    arun(body)


# --- close frames -----------------------------------------------------------------------------


BAD_CODE = (
    "protocol error: socket 0: invalid status code in a close frame "
    "(1005, 1006, 1015 and codes outside 1000-4999 are not allowed on the wire)"
)


@pytest.mark.parametrize(
    ("code", "reason", "rc", "text"),
    [
        (1000, b"bye", 1, "connection closed: peer closed socket 0 with code 1000 (bye)"),
        (4000, b"", 1, "connection closed: peer closed socket 0 with code 4000"),
        (4999, b"app", 1, "connection closed: peer closed socket 0 with code 4999 (app)"),
        (1005, b"", -1, BAD_CODE),
        (1006, b"", -1, BAD_CODE),
        (1015, b"", -1, BAD_CODE),
        (999, b"", -1, BAD_CODE),
        (5000, b"", -1, BAD_CODE),
        (1000, b"\xff\xfe", -1, "protocol error: socket 0: invalid UTF-8 in the close frame's reason"),
    ],
    ids=["1000", "4000", "4999", "1005", "1006", "1015", "999", "5000", "reason_not_utf8"],
)
def test_close_frame_codes(arun: Arun, code: int, reason: bytes, rc: int, text: str) -> None:
    """Close frames: 1000 and 4000-4999 end the read with 1 and the code; 1005, 1006, 1015, codes
    out of range and a reason that is not UTF-8 are protocol errors (-1); the message before is read."""

    async def body() -> None:
        async with HostileServer(close_with(code, reason)) as server:
            client = WebSocketClient()
            sock = await _open(client, server)
            before = await client.read(sock, scaled(2))
            assert (before.rc, before.data) == (0, "before")
            result = await client.read(sock, scaled(2))
            assert result.rc == rc
            assert result.close_code == (code if rc == 1 else None)
            assert _error(client).startswith(text)
            assert await client.close(sock, SHORT) == 0

    arun(body)


# --- everything at once, beside a healthy connection ------------------------------------------


async def _exercise(name: str, client: WebSocketClient, url: str) -> tuple[str, int, str]:
    """One hostile connection: open (1.5 s: twenty opens at once, one of them flooding, can keep
    an upgrade waiting past 0.5 s on a busy machine), then read once (0.5 s); the rc of what
    failed first."""
    sock = await client.open(url, ConnectOptions(timeout_s=scaled(1.5)))
    if sock < 0:
        return name, sock, _error(client)
    if name == "never_reads":
        rc = 0
        for _ in range(200):
            rc = client.write(sock, b"\0" * (256 << 10))
            if rc < 0 or await client.drain(sock, scaled(0.5)) < 0:
                rc = -1
                break
        return name, rc, _error(client)
    for _ in range(10):  # a flood would go on for ever: read a few, then leave
        result = await client.read(sock, scaled(0.5))
        if result.rc != 0:
            return name, result.rc, _error(client)
    await client.close(sock, scaled(0.5))
    return name, 0, ""


def test_every_fault_at_once_leaves_a_healthy_connection_alone(arun: Arun) -> None:
    """All the faults at once on one client and loop: each ends in bounded time with its code, while
    round trips on a healthy connection beside them keep working and stay fast."""

    expected = {
        "silent": -2,
        "html_200": -1,
        "wrong_accept": -1,
        "reserved_opcode": -1,
        "masked_frame": -1,
        "bad_utf8_text": -1,
        "huge_frame": -1,
        "trickle": -2,
        "reset_mid_message": 1,
        "never_reads": -1,
        "flood": 0,
        "close_1005": -1,
        "ping_flood": -2,  # the pings, "done", then silence: the second read times out
        "bad_header_line": -1,
        "endless_headers": -1,
        "endless_empty_continuations": -1,
        "close_between_fragments": 1,
        "length_msb_set": -1,
    }

    async def body() -> None:
        async with EmbeddedServer() as healthy, all_hostile_servers() as servers:
            client = WebSocketClient(send_buffer_limit=1 << 20, max_queued_messages=100)
            echo = await client.open(healthy.url + "/echo", ConnectOptions(timeout_s=scaled(2)))
            assert echo >= 0
            done = asyncio.Event()
            slowest = 0.0
            trips = 0

            async def round_trips() -> None:
                nonlocal slowest, trips
                while not done.is_set() and trips < 10_000:
                    start = time.monotonic()
                    assert client.write(echo, f"ping {trips}") > 0
                    result = await client.read(echo, scaled(2))
                    assert (result.rc, result.data) == (0, f"ping {trips}")
                    slowest = max(slowest, time.monotonic() - start)
                    trips += 1
                    await asyncio.sleep(0.01)

            beside = asyncio.create_task(round_trips())
            start = time.monotonic()
            outcomes = await asyncio.gather(*(_exercise(n, client, s.url) for n, s in servers.items()))
            elapsed = time.monotonic() - start
            done.set()
            await beside
            got = {name: rc for name, rc, _ in outcomes}
            assert got == expected, outcomes
            assert elapsed < scaled(5)
            assert trips >= 10 and slowest < scaled(0.5), (trips, slowest)
            await client.aclose()

    arun(body)


class all_hostile_servers:
    """Every behaviour of BEHAVIOURS on its own server, as one async context manager."""

    def __init__(self) -> None:
        self.servers = {
            name: HostileServer(b, rcvbuf=4096 if name in ("never_reads", "ping_flood") else None)
            for name, b in BEHAVIOURS.items()
        }

    async def __aenter__(self) -> dict[str, HostileServer]:
        for server in self.servers.values():
            await server.__aenter__()
        return self.servers

    async def __aexit__(self, *exc: object) -> None:
        for server in self.servers.values():
            await server.__aexit__(*exc)


# --- a run against a server that dies mid-test ------------------------------------------------


def test_run_against_server_dying_mid_test_ends_on_time_with_honest_report(arun: Arun) -> None:
    """A check run whose server resets mid-message ends at once with a complete report: the steps
    before passed, the read that met the reset failed with its text, the rest are shown skipped."""

    async def body() -> RunResult:
        async with HostileServer(reset_mid_message) as server:
            steps = "  - open: main\n  - read: main\n  - name: second\n    read: main\n  - close: main\n"
            scenario = _scenario(server.url, steps, "defaults: {read_timeout: 5s}\n")
            start = time.monotonic()
            result = await run_check(scenario, handle_signals=False)
            assert time.monotonic() - start < scaled(2)
            return result

    result = arun(body)
    assert result.passed is False and result.interrupted is False and result.error == ""
    by_name = {s.name: s for s in result.steps}
    assert (by_name["open main"].ok, by_name["read main"].ok) == (1, 1)
    second = by_name["second"]
    assert second.failures == 1 and second.rc == {"1": 1}
    assert second.errors[0].message == (
        "read returned rc 1, expected rc 0: connection closed: peer closed the socket without a close frame "
        + MID_FRAME
    )
    assert by_name["close main"].count == 0


def _short(ms: float) -> str:
    """A wait below 10 ms as the verdict writes it: two significant figures (0.39, not 0)."""
    return f"{ms:.0f}" if ms >= 10 else f"{ms:.2g}"
