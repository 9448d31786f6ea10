"""``wsload record``'s proxy: WebSocket sessions recorded on their way to the real server.

A client (a browser or an app pointed at ``ws://127.0.0.1:PORT/PATH``) connects here; the proxy
opens the same path on the upstream server with the client's headers (those of the handshake
itself left out) and subprotocols, answers the client with the subprotocol the upstream chose,
and forwards every message both ways, noting each with its time and direction. The sessions are
then written like a HAR's (``runner.har.convert``). TLS to a ``wss://`` upstream is verified
against the system's CAs (or the PEM bundle given), as any connection of wsload is.

A session the upstream refuses is answered 502 with the reason (the upstream's password and
secret query values masked) and not recorded; one whose client left before its handshake ended
is not recorded either. The upstream's close code and reason are passed on to the client.
Frames beyond ``MAX_FRAMES``, or beyond ``MAX_BYTES`` of messages, per session are counted, not
kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import WebSocketException
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from runner.har.convert import redact_url
from runner.har.reader import MAX_FRAMES, Frame, Session

#: Message bytes kept per session (a recording of a video feed is not a scenario).
MAX_BYTES = 64 * 1024 * 1024

__all__ = ["Recorder"]

#: Handshake headers the proxy's own connection to the upstream makes.
_HOP = frozenset(
    {
        "host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version",
        "sec-websocket-extensions", "sec-websocket-protocol", "sec-websocket-accept", "content-length",
    }
)  # fmt: skip


@dataclass(slots=True)
class _Live:
    """A session being recorded."""

    url: str
    headers: tuple[tuple[str, str], ...]
    subprotocols: tuple[str, ...]
    upstream: ClientConnection
    frames: list[Frame] = field(default_factory=list)
    dropped: int = 0
    size: int = 0
    opened: float = field(default_factory=time.time)
    began: bool = False  # the client's handshake ended: the session is the client's

    def note(self, sent: bool, data: str | bytes) -> None:
        if len(self.frames) < MAX_FRAMES and self.size + len(data) <= MAX_BYTES:
            self.frames.append(Frame(sent, time.time(), data))
            self.size += len(data)
        else:
            self.dropped += 1


class Recorder:
    """The proxy: ``await start(host, port)``, then ``sessions()`` whenever asked (Ctrl-C)."""

    def __init__(self, upstream: str, ca_pem: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if self.upstream.startswith("wss://"):
            self._ssl = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
        self._live: dict[int, _Live] = {}
        self._done: list[_Live] = []
        self._server: Any = None
        self.refused: list[str] = []

    async def start(self, host: str, port: int) -> int:
        """Listen; the port listened on (``port`` 0: a free one)."""
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._connect_upstream,
            select_subprotocol=self._subprotocol,
            compression=None,
            max_size=None,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        for key, live in list(self._live.items()):
            with contextlib.suppress(Exception):
                await live.upstream.close()
            if not live.began:  # the client left during its handshake
                del self._live[key]

    def sessions(self) -> list[Session]:
        """Every session seen (ended or still open), in the order they began, with frames."""
        everything = sorted(
            [*self._done, *(s for s in self._live.values() if s.began)],
            key=lambda s: s.opened,
        )
        return [
            Session(
                index=i,
                url=s.url,
                headers=s.headers,
                subprotocols=s.subprotocols,
                started=s.opened,
                frames=tuple(s.frames),
                dropped=s.dropped,
                label=f"recorded session {i + 1}",
            )
            for i, s in enumerate(everything)
        ]

    async def _connect_upstream(self, conn: ServerConnection, request: Request) -> Response | None:
        url = self.upstream + request.path
        headers = [(k, v) for k, v in request.headers.raw_items() if k.lower() not in _HOP]
        offered = [
            p.strip()
            for v in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in v.split(",")
            if p.strip()
        ]
        origin = request.headers.get("Origin")
        try:
            upstream = await connect(
                url,
                additional_headers=[(k, v) for k, v in headers if k.lower() != "origin"],
                subprotocols=[Subprotocol(p) for p in offered] or None,
                origin=origin,  # type: ignore[arg-type]
                ssl=self._ssl,
                compression=None,
                max_size=None,
                open_timeout=10,
            )
        except (OSError, WebSocketException, TimeoutError, ssl.SSLError) as exc:
            reason = f"upstream {redact_url(url)}: {type(exc).__name__}: {redact_url(str(exc))}"
            self.refused.append(reason)
            return conn.respond(502, reason + "\n")
        self._live[id(conn)] = _Live(url, tuple(headers), tuple(offered), upstream)
        return None

    def _subprotocol(self, conn: ServerConnection, offered: Any) -> Subprotocol | None:
        live = self._live.get(id(conn))
        chosen = live.upstream.subprotocol if live is not None else None
        return chosen if chosen in offered else None

    async def _handle(self, conn: ServerConnection) -> None:
        live = self._live.get(id(conn))
        if live is None:
            return
        live.began = True
        upstream = live.upstream

        async def pump(source: Any, sink: Any, sent: bool) -> None:
            async for message in source:
                live.note(sent, message)
                await sink.send(message)

        tasks = [
            asyncio.ensure_future(pump(conn, upstream, True)),
            asyncio.ensure_future(pump(upstream, conn, False)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # The side that closed first: its close code and reason go on to the other.
            for closed, other in ((upstream, conn), (conn, upstream)):
                if closed.close_code is not None:
                    with contextlib.suppress(Exception):
                        await other.close(closed.close_code or 1000, closed.close_reason or "")
                    break
            for side in (upstream, conn):
                with contextlib.suppress(Exception):
                    await side.close()
            self._done.append(self._live.pop(id(conn)))
