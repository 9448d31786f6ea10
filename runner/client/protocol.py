"""``WsConnection``: an ``asyncio.Protocol`` that moves bytes between the transport and websockets'
Sans-I/O ``ClientProtocol``, and queues whole messages stamped with the time they were parsed.

Chosen over websockets' own asyncio API by benchmark (bench/bench_client_roundtrip.py): no task
per connection or per message, a read of an already queued message creates no future, and a
waiting read uses one future per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from time import monotonic_ns

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State

__all__ = ["WsConnection"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
_OPEN = State.OPEN


class WsConnection(asyncio.Protocol):
    """One WebSocket connection. ``messages`` holds ``(data, received_ns)``; ``closed`` turns
    true when the peer's close frame or the end of the TCP stream has been seen."""

    def __init__(self, ws: ClientProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self.ws = ws
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.messages: deque[tuple[str | bytes, int]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.handshake: asyncio.Future[Response | None] = loop.create_future()
        self.closed = False
        self.lost: asyncio.Future[None] = loop.create_future()
        self.lost_exc: BaseException | None = None
        self.pings: dict[bytes, tuple[int, asyncio.Future[int]]] = {}
        self.last_write_ns = 0
        self._frag: list[bytes] = []
        self._frag_text = False
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        # Read time-outs: one lazily re-armed timer per connection instead of one per read.
        self.deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # --- asyncio callbacks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = monotonic_ns()
        ws = self.ws
        ws.receive_data(data)
        events = ws.events_received()
        if events:
            self._handle(events, now)
        if ws.parser_exc is not None:  # a protocol error or a too big message: no more messages
            self._set_closed()
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._handle(self.ws.events_received(), monotonic_ns())
        self._flush()
        self._set_closed()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_exc = exc
        if self.ws.state is not State.CLOSED:
            with contextlib.suppress(Exception):  # already at EOF
                self.ws.receive_eof()
            self.ws.events_received()
        self._set_closed()
        if not self.handshake.done():
            self.handshake.set_result(None)
        if not self.lost.done():
            self.lost.set_result(None)
        for _, fut in self.pings.values():
            if not fut.done():
                fut.set_result(-1)
        self.pings.clear()
        self._wake_drain()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()

    # --- the work -----------------------------------------------------------------------------

    def _handle(self, events: Sequence[object], now: int) -> None:
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is _TEXT or opcode is _BINARY:
                    payload = bytes(event.data)  # no copy: the parser yields bytes
                    if event.fin:
                        self._deliver(payload.decode() if opcode is _TEXT else payload, now)
                    else:
                        self._frag = [payload]
                        self._frag_text = opcode is _TEXT
                elif opcode is _CONT:
                    self._frag.append(bytes(event.data))
                    if event.fin:
                        payload = b"".join(self._frag)
                        self._frag = []
                        self._deliver(payload.decode() if self._frag_text else payload, now)
                elif opcode is _PONG:
                    entry = self.pings.pop(bytes(event.data), None)
                    if entry is not None and not entry[1].done():
                        entry[1].set_result(now - entry[0])
                elif opcode is _CLOSE:
                    self._set_closed()
            elif isinstance(event, Response) and not self.handshake.done():
                self.handshake.set_result(event)

    def _deliver(self, data: str | bytes, now: int) -> None:
        self.messages.append((data, now))
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _set_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _flush(self) -> None:
        """Write what the protocol core wants sent; an empty chunk means half-close."""
        transport = self.transport
        if transport is None:
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()

    def arm(self, deadline: float) -> None:
        """Make sure a timer fires no later than ``deadline`` (loop time) for the current waiter.
        A timer armed for a later time is moved; an earlier one is kept and re-armed when it
        fires, so a stream of quick reads creates no timer per read."""
        self.deadline = deadline
        timer = self._timer
        if timer is None or self._timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self.deadline
        waiter = self.waiter
        if deadline is None or waiter is None or waiter.done():
            return
        if self.loop.time() + 0.0005 >= deadline:  # loops may fire a timer up to ~1 ms early
            self.deadline = None
            waiter.set_result(None)
        else:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _wake_drain(self) -> None:
        fut = self._drain
        if fut is not None:
            self._drain = None
            if not fut.done():
                fut.set_result(None)

    # --- used by the client -------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.ws.state is _OPEN and not self.lost.done()

    def send(self, data: str | bytes) -> int:
        """Queue one message (text for str, binary for bytes) on the transport; bytes of payload."""
        if isinstance(data, str):
            encoded = data.encode()
            self.ws.send_text(encoded)
            size = len(encoded)
        else:
            self.ws.send_binary(data)
            size = len(data)
        self.last_write_ns = monotonic_ns()
        self._flush()
        return size

    async def drain(self) -> None:
        if self._paused and not self.lost.done():
            if self._drain is None:
                self._drain = self.loop.create_future()
            await self._drain
