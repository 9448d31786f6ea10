"""``EmbeddedServer``: the WebSocket server tests and users run scenarios against.

Built on websockets' asyncio server; ``process_request`` routes by path and answers
``/status/NNN`` with that HTTP status before any upgrade. A second listener accepts TCP and never
answers, so a client's time-out (-2) can be produced for real.

TLS: unless a certificate is given, a **self-signed** leaf (not a CA) for 127.0.0.1 and localhost
is generated at start, so a client that allows exactly ``SelfSignedCertificate`` connects and
every other check still applies; ``.ca_pem`` is that certificate, for clients that want to trust it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from itertools import count
from types import TracebackType
from typing import cast
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from runner.server.certs import CertKey, self_signed, write_pem

__all__ = ["ROUTES", "EmbeddedServer"]

ROUTES: tuple[str, ...] = (
    "/echo",
    "/rpc",
    "/push",
    "/close",
    "/slow",
    "/status/NNN",
    "/headers",
    "/room/NAME",
)
#: A room's ticker sends at most this many messages a second (``/room/NAME?tick=RATE``).
MAX_TICK_RATE = 10_000.0


def _query(path: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(path)
    return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}


def _number(params: dict[str, str], name: str, default: float) -> float:
    try:
        return float(params.get(name, default))
    except ValueError:
        return default


class _Silent(asyncio.Protocol):
    """Accepts a TCP connection and never says anything (the hang listener); the connection is
    held until the client leaves or the server stops. Any transport is taken: uvloop's are not
    subclasses of ``asyncio.Transport`` (an isinstance check here used to reset every
    connection under uvloop, so a client saw -1 instead of its time-out)."""

    def __init__(self, held: set[asyncio.Transport]) -> None:
        self.held = held
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.held.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.held.discard(self.transport)  # a long `wsload serve` keeps no dead connection


class EmbeddedServer:
    """Routes: /echo, /rpc, /push?rate=&count=, /close?code=&reason=&after=, /slow?delay=,
    /status/NNN, /headers, /room/NAME?tick=&size= (see ``_room``). ``tls`` serves wss (generated
    self-signed certificate unless ``certfile``/``keyfile``); ``require_client_cert`` with
    ``client_ca`` (PEM text or path) makes it mTLS."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        certfile: str | None = None,
        keyfile: str | None = None,
        client_ca: str | None = None,
        require_client_cert: bool = False,
        certificate: CertKey | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.host = host
        self.reuse_port = reuse_port  # several processes share the port (SO_REUSEPORT)
        self.requested_port = port
        self.tls = tls or certfile is not None or certificate is not None
        self.certfile = certfile
        self.keyfile = keyfile
        self.client_ca = client_ca
        self.require_client_cert = require_client_cert
        self.certificate = certificate
        self.port = 0
        self.hang_port = 0
        self.ca_pem: str | None = None
        self.ssl_context: ssl.SSLContext | None = None  # set by start() when serving TLS
        self._server: Server | None = None
        self._hang: asyncio.AbstractServer | None = None
        self._held: set[asyncio.Transport] = set()
        self._sessions = count(1)
        self._rooms: dict[str, _Room] = {}
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # --- addresses ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}"

    @property
    def hang_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.hang_port}/echo"

    # --- life cycle ---------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # No TLS 1.3 session tickets: with them, about one handshake in 1,500 on a loaded machine
        # left the upgrade request unanswered for 10 s (asyncio's SSL transport; seen with a
        # websockets sync client); without them none in 3,000. Test clients never resume sessions.
        ctx.num_tickets = 0
        with tempfile.TemporaryDirectory(prefix="wsload-server-") as directory:
            if self.certfile is not None:
                ctx.load_cert_chain(self.certfile, self.keyfile, password=b"")
                with open(self.certfile, encoding="ascii") as f:
                    self.ca_pem = f.read()
            else:
                cert = self.certificate or self_signed()
                self.ca_pem = cert.cert_pem
                path = write_pem(directory, "server.pem", cert.fullchain_pem + cert.key_pem)
                ctx.load_cert_chain(path, password=b"")
        if self.require_client_cert:
            if not self.client_ca:
                raise ValueError("require_client_cert needs client_ca")
            if "-----BEGIN" in self.client_ca:
                ctx.load_verify_locations(cadata=self.client_ca)
            else:
                ctx.load_verify_locations(cafile=self.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def start(self) -> EmbeddedServer:
        ctx = self.ssl_context = self._ssl_context() if self.tls else None
        self._server = await serve(
            self._handle,
            self.host,
            self.requested_port,
            ssl=ctx,
            process_request=self._route,
            max_size=16 << 20,
            close_timeout=1.0,  # a stop does not wait 10 s for a client that stopped reading
            server_header=None,
            reuse_port=self.reuse_port or None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._hang = await loop.create_server(lambda: _Silent(self._held), self.host, 0)
        self.hang_port = self._hang.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._hang is not None:
            self._hang.close()
            for transport in list(self._held):
                transport.abort()
            self._held.clear()
            await self._hang.wait_closed()
            self._hang = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> EmbeddedServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def run_in_thread(self) -> EmbeddedServer:
        """Start in a daemon thread with its own loop (for synchronous callers); stop with
        ``stop_thread()`` or use as a ``with`` block."""
        started = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="wsload-embedded-server", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        if self._thread is not None and self._thread_loop is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
            self._thread.join()
            self._thread = None

    def __enter__(self) -> EmbeddedServer:
        return self.run_in_thread()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_thread()

    # --- routing ------------------------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _ = _query(request.path)
        if path.startswith("/room/") and len(path) > len("/room/"):
            return None
        if path.startswith("/status/"):
            try:
                status = HTTPStatus(int(path.rsplit("/", 1)[1]))
            except ValueError:
                return connection.respond(HTTPStatus.BAD_REQUEST, "bad status\n")
            return connection.respond(status, f"{status.value} {status.phrase}\n")
        if path not in _HANDLERS:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no route {path}; try {', '.join(ROUTES)}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        path, params = _query(ws.request.path if ws.request else "/echo")
        handler = EmbeddedServer._room if path.startswith("/room/") else _HANDLERS[path]
        with contextlib.suppress(ConnectionClosed):
            await handler(self, ws, params)

    async def _echo(self, ws: ServerConnection, params: dict[str, str]) -> None:
        async for message in ws:
            await ws.send(message)

    async def _rpc(self, ws: ServerConnection, params: dict[str, str]) -> None:
        session = next(self._sessions)
        async for message in ws:
            try:
                request = json.loads(message)
                if not isinstance(request, dict):
                    raise ValueError
            except ValueError:
                await ws.send(json.dumps({"error": "invalid JSON"}))
                continue
            result = {"method": request.get("method"), "payload": request.get("payload"), "session": session}
            await ws.send(json.dumps({"id": request.get("id"), "result": result}))

    async def _push(self, ws: ServerConnection, params: dict[str, str]) -> None:
        rate = max(_number(params, "rate", 20), 0.001)
        total = int(_number(params, "count", 100))

        async def pusher() -> None:
            start = time.monotonic()
            for seq in range(total):
                await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
                await ws.send(json.dumps({"seq": seq, "ts": time.time()}))

        task = asyncio.create_task(pusher())
        try:
            await self._echo(ws, params)
        finally:
            task.cancel()

    async def _close(self, ws: ServerConnection, params: dict[str, str]) -> None:
        code = int(_number(params, "code", 4000))
        reason = params.get("reason", "bye")
        if int(_number(params, "after", 1)) > 0:
            await ws.recv()
        await ws.close(code, reason)

    async def _slow(self, ws: ServerConnection, params: dict[str, str]) -> None:
        delay = _number(params, "delay", 0.5)
        closed = asyncio.ensure_future(ws.wait_closed())  # so a stop never waits out a delay
        try:
            async for message in ws:
                done, _ = await asyncio.wait({closed}, timeout=delay)
                if done:
                    return
                await ws.send(message)
        finally:
            closed.cancel()

    async def _room(self, ws: ServerConnection, params: dict[str, str]) -> None:
        """A broadcast room: every message a member sends goes to every member, the sender too.
        ``?tick=RATE`` (on the first member's URL; at most ``MAX_TICK_RATE``) makes the room
        publish stamped messages itself, ``&size=N`` padding each with N bytes: a market-data
        feed whose delivery latency a ``read`` with ``latency_from: {json: sent_at}`` measures.
        The room lives while it has members. Under ``wsload serve --processes N`` each process
        has its own rooms."""
        path, _ = _query(ws.request.path if ws.request else "/room/lobby")
        name = path.removeprefix("/room/")
        room = self._rooms.setdefault(name, _Room())
        room.members.add(ws)
        rate = min(_number(params, "tick", 0), MAX_TICK_RATE)
        if rate > 0 and room.ticker is None:
            size = max(0, min(int(_number(params, "size", 0)), 1 << 20))
            room.ticker = asyncio.create_task(room.tick(name, rate, size))
        try:
            async for message in ws:
                broadcast(room.members, message)
        finally:
            room.members.discard(ws)
            if not room.members:
                if room.ticker is not None:
                    room.ticker.cancel()
                del self._rooms[name]

    async def _headers(self, ws: ServerConnection, params: dict[str, str]) -> None:
        headers: Headers = ws.request.headers if ws.request else Headers()
        seen: dict[str, str] = {}
        for name, value in headers.raw_items():
            seen[name] = f"{seen[name]}, {value}" if name in seen else value
        await ws.recv()
        await ws.send(json.dumps(seen))
        await self._echo(ws, params)


class _Room:
    """The members of one ``/room/NAME`` and its ticker, if one was asked for."""

    def __init__(self) -> None:
        self.members: set[ServerConnection] = set()
        self.ticker: asyncio.Task[None] | None = None

    async def tick(self, name: str, rate: float, size: int) -> None:
        """Send every member ``{"room", "seq", "sent_at", "pad"}`` ``rate`` times a second, each
        message stamped (``sent_at``, milliseconds since the epoch) as it is handed to all."""
        start = time.monotonic()
        pad = "x" * size
        for seq in count():
            await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
            stamp = time.time_ns() / 1e6
            message = json.dumps({"room": name, "seq": seq, "sent_at": stamp, "pad": pad})
            broadcast(self.members, message)


_HANDLERS: dict[str, Callable[[EmbeddedServer, ServerConnection, dict[str, str]], Awaitable[None]]] = {
    "/echo": EmbeddedServer._echo,
    "/rpc": EmbeddedServer._rpc,
    "/push": EmbeddedServer._push,
    "/close": EmbeddedServer._close,
    "/slow": EmbeddedServer._slow,
    "/headers": EmbeddedServer._headers,
}
