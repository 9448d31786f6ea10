"""The embedded server's routes, its thread mode, and ``wsload serve`` as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import scaled
from websockets.sync.client import connect

from runner.client import ConnectOptions, ErrorKind, WebSocketClient
from runner.server import EmbeddedServer

Arun = Callable[[Callable[[], Any]], Any]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_rpc_answers_with_same_id(arun: Arun) -> None:
    """/rpc answers each JSON request with its id, method, payload and a session number."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/rpc")
            client.write(sock, json.dumps({"method": "dummy", "id": 7, "payload": [1, 2]}))
            answer = json.loads((await client.read(sock, scaled(2))).data)  # type: ignore[arg-type]
            assert answer["id"] == 7
            assert answer["result"]["method"] == "dummy" and answer["result"]["payload"] == [1, 2]
            assert isinstance(answer["result"]["session"], int)
            client.write(sock, "not json")
            assert json.loads((await client.read(sock, scaled(2))).data) == {"error": "invalid JSON"}  # type: ignore[arg-type]

    arun(body)


def test_push_rate_and_count(arun: Arun) -> None:
    """/push sends count messages with increasing seq at about the given rate, and still echoes."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/push?rate=50&count=5")
            start = time.monotonic()
            seqs = [json.loads((await client.read(sock, scaled(2))).data)["seq"] for _ in range(5)]  # type: ignore[arg-type]
            elapsed = time.monotonic() - start
            assert seqs == [0, 1, 2, 3, 4]
            assert 0.06 <= elapsed < scaled(1.0)  # 4 intervals of 20 ms
            client.write(sock, "echo?")
            assert (await client.read(sock, scaled(2))).data == "echo?"
            assert (await client.read(sock, 0.1)).rc == -2  # no sixth push

    arun(body)


def test_slow_delays_answers(arun: Arun) -> None:
    """/slow?delay=0.2 echoes after about 0.2 s, so a shorter read times out first."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/slow?delay=0.2")
            client.write(sock, "late")
            assert (await client.read(sock, 0.05)).rc == -2
            assert (await client.read(sock, scaled(2))).data == "late"

    arun(body)


def test_close_at_once(arun: Arun) -> None:
    """/close?after=0&code=4100 closes right after the upgrade with that code and reason."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/close?after=0&code=4100&reason=done")
            result = await client.read(sock, scaled(2))
            assert (result.rc, result.close_code) == (1, 4100)
            assert "done" in str(client.last_error())

    arun(body)


def test_status_and_unknown_routes(arun: Arun) -> None:
    """/status/NNN rejects the upgrade with NNN; an unknown path gets 404."""

    async def body() -> None:
        async with EmbeddedServer() as server:
            client = WebSocketClient()
            assert await client.open(server.url + "/status/503") == -1
            assert client.last_error().text.startswith("handshake rejected: HTTP 503")  # type: ignore[union-attr]
            assert await client.open(server.url + "/nowhere") == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.HANDSHAKE_REJECTED and "404" in err.text

    arun(body)


def test_tls_server_hang_port_times_out(arun: Arun) -> None:
    """The TLS server's hang listener never completes the TLS handshake: -2 during TLS."""

    async def body() -> None:
        async with EmbeddedServer(tls=True) as server:
            assert server.url.startswith("wss://") and server.ca_pem and "BEGIN CERTIFICATE" in server.ca_pem
            client = WebSocketClient()
            rc = await client.open(
                server.hang_url, ConnectOptions(timeout_s=scaled(0.3), ca_certificates=server.ca_pem)
            )
            assert rc == -2 and "TLS handshake" in str(client.last_error())

    arun(body)


def test_run_in_thread_serves_sync_clients() -> None:
    """run_in_thread serves synchronous callers; stop_thread ends it."""
    server = EmbeddedServer()
    with server, connect(server.url + "/echo") as ws:
        ws.send("sync")
        assert ws.recv(timeout=scaled(2)) == "sync"
    with pytest.raises(OSError):
        connect(server.url + "/echo", open_timeout=1).close()


SERVE = (
    "import argparse, sys\n"
    "from runner.commands import serve\n"
    "p = argparse.ArgumentParser(); s = p.add_subparsers()\n"
    "serve.add_parser(s)\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.handler(a))\n"
)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_command_prints_urls_and_stops_on_signal(stop: signal.Signals) -> None:
    """`wsload serve --port 0 --tls` prints its wss URLs, serves them, and exits 0 on SIGINT/SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--port", "0", "--tls"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        assert proc.stdout is not None
        while not (lines and lines[-1].startswith("serving on port")):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        echo = next(line.split()[1] for line in lines if line.startswith("/echo"))
        assert echo.startswith("wss://127.0.0.1:")
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with connect(echo, ssl=ctx, open_timeout=scaled(30)) as ws:
            ws.send("cli")
            assert ws.recv(timeout=scaled(2)) == "cli"
        proc.send_signal(stop)
        assert proc.wait(timeout=scaled(10)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_mtls_writes_client_key_privately(arun: Arun) -> None:
    """`wsload serve --mtls` keeps the generated client key out of its output, in a 0600 file
    that works as sslConfig, and removes it at exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--port", "0", "--mtls"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith("serving on port")):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        output = "".join(lines)
        assert "PRIVATE KEY" not in output
        info = next(line for line in lines if line.startswith("client certificate for --mtls:"))
        cert_path = info.split(": ", 1)[1].split(" ", 1)[0]
        key_path = info.split("(key: ", 1)[1].split(",", 1)[0]
        assert os.stat(key_path).st_mode & 0o777 == 0o600
        echo = next(line.split()[1] for line in lines if line.startswith("/echo"))
        from runner.client import ClientCertificate

        config = ClientCertificate(cert_path, key_path, "EC")

        async def body() -> None:
            client = WebSocketClient()
            opts = ConnectOptions(
                ssl_config=config, ignore_ssl_errors=frozenset({"SelfSignedCertificate"}), timeout_s=scaled(5)
            )
            sock = await client.open(echo, opts)
            assert sock >= 0, client.last_error()
            client.write(sock, "mtls")
            assert (await client.read(sock, scaled(2))).data == "mtls"
            await client.close(sock)
            assert (
                await client.open(
                    echo,
                    ConnectOptions(
                        ignore_ssl_errors=frozenset({"SelfSignedCertificate"}), timeout_s=scaled(5)
                    ),
                )
                == -1
            )

        arun(body)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=scaled(10)) == 0
        assert not os.path.exists(key_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        return [int(p) for p in f.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _start_serve(*extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--port", "0", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    while not (lines and lines[-1].startswith("serving on port")):
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        lines.append(line)
    echo = next(line.split()[1] for line in lines if line.startswith("/echo"))
    return proc, echo


def test_serve_processes_share_one_port_and_one_certificate(arun: Arun) -> None:
    """`wsload serve --processes 3 --tls`: three processes behind one wss URL, one certificate, so
    probe-and-pin selective ignoring succeeds whichever process a connection lands on."""
    proc, echo = _start_serve("--tls", "--processes", "3")
    try:
        deadline = time.monotonic() + scaled(10)
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        helpers = _children(proc.pid)
        assert len(helpers) == 2
        time.sleep(scaled(1.5))  # the helpers bind the port after they start

        async def body() -> list[int]:
            client = WebSocketClient()
            options = ConnectOptions(
                timeout_s=scaled(5), ignore_ssl_errors=frozenset({"SelfSignedCertificate"})
            )
            codes = []
            for i in range(24):
                sock = await client.open(echo, options)
                codes.append(sock)
                if sock >= 0:
                    assert client.write(sock, f"m{i}") == len(f"m{i}")
                    result = await client.read(sock, scaled(2))
                    assert (result.rc, result.data) == (0, f"m{i}")
                    await client.close(sock)
            await client.aclose()
            return codes

        codes = arun(body)
        assert all(code >= 0 for code in codes), codes
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=scaled(15)) == 0
        assert _wait_gone(helpers, scaled(10)), "helper processes outlived the server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_helpers_stop_when_the_parent_is_killed() -> None:
    """A SIGKILLed `wsload serve --processes 2` leaves no helper process behind."""
    proc, _ = _start_serve("--processes", "2")
    deadline = time.monotonic() + scaled(10)
    while not _children(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    helpers = _children(proc.pid)
    assert len(helpers) == 1
    proc.kill()
    proc.wait()
    assert _wait_gone(helpers, scaled(10)), "a helper outlived its killed parent"
