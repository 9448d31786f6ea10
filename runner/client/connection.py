"""``WsConnection``: one WebSocket connection, an ``asyncio.Protocol`` that owns all its state
(the queue of received messages, the reader waiting for one and its deadline, pings in flight,
frames waiting for the end of the loop turn, flow control) and moves bytes between the transport
and websockets' Sans-I/O ``ClientProtocol``. The client only calls its methods.

Chosen over websockets' own asyncio API by benchmark (bench/bench_client_roundtrip.py): no task
per connection or per message, a read of an already queued message creates no future, and a
waiting read uses one future per connection. Received messages are queued as the ``ReadResult``
the read returns, stamped with the time they were parsed.

Memory stays bounded against a hostile peer. Received bytes are fed to the parser in slices of
``FEED_CHUNK``; once the queue of unread messages holds more than ``max_queued_messages`` or
``max_queued_bytes``, the rest of the chunk is kept aside and reading from the transport is paused
(TCP flow control then slows the sender); it resumes when reads have taken the queue below half.
A frame header announcing more than the message size limit fails at once (the frame loop checks
the length before reading the payload). The automatic pongs to a peer that pings without reading
are bounded too: while the send buffer is above its high-water mark only the pong for the latest
ping is kept, and written when it drains.

Receiving: whole small data frames go through the direct receive path (``runner.client.direct``)
while websockets' parser waits at a frame boundary (``compat.direct_receive_ready``), everything
else through websockets. Nothing after a text frame that is not UTF-8 is processed (RFC 6455
7.1.7), on either path. ``compat.DIRECT_RECEIVE`` (``WSLOAD_DIRECT_RECEIVE=0``) or the
``direct_receive`` argument turns the direct path off; ``direct_messages`` counts what it took.

Sending is batched per loop turn: a data frame is kept on its connection (frames sent to one
connection in the same turn are joined) and ``WriteBatcher`` hands all of them to their transports
from one callback, after the code running in this turn has had its say. One burst of writes per
turn instead of one write between every two steps lets the peer process a batch per wake-up; on
loopback the kernel's receive path (and the peer's wake-up) runs in the sender's system call, so
this cut the client's CPU per round trip by about a third (bench/README.md). Frames of
``WRITE_BATCH_BYTES`` or more, and anything the protocol core sends (close, pong, ping), go out at
once, after whatever was waiting on that connection, so order on the wire is the order of calls.

An idle connection is kept small (row 2 of the benchmarks): slots, no message queue before the
first message, futures only while someone waits, and, once past the handshake, the frame loop
runs on its own, not inside the generator that parsed the 101 answer (``compat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Iterable, Sequence
from enum import IntEnum
from functools import partial
from time import monotonic_ns
from typing import Protocol

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State

from runner.client import compat
from runner.client.codes import RC_OK, ReadResult
from runner.client.direct import take_data_frames
from runner.client.frames import encode_client_frame
from runner.client.timers import TimerHeap, settle

__all__ = [
    "FEED_CHUNK",
    "MAX_QUEUED_BYTES",
    "MAX_QUEUED_MESSAGES",
    "SEND_BUFFER_LIMIT",
    "WRITE_BATCH_BYTES",
    "SendRefused",
    "Waker",
    "WriteBatcher",
    "WsConnection",
]

#: A write is refused while this many bytes wait in the socket's send buffer: a peer that does
#: not read cannot make us hold more than this plus one message.
SEND_BUFFER_LIMIT = 8 << 20
#: Unread messages (and their bytes) above which reading from the socket pauses.
MAX_QUEUED_MESSAGES = 4096
MAX_QUEUED_BYTES = 8 << 20
#: Bytes waiting on one connection at which they are written at once instead of at the end of
#: the loop turn: bounds what a turn of writes can hold back, and lets the transport's flow
#: control (pause_writing) see a peer that does not read.
WRITE_BATCH_BYTES = 64 << 10
#: Received data is parsed in slices of this size, so one large chunk of tiny frames cannot
#: overshoot the queue limits by more than one slice's worth of messages.
FEED_CHUNK = 16 << 10

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
_OPEN = State.OPEN
_PONG_HEAD = 0x80 | Opcode.PONG  # first byte of a whole pong frame
_CLOSE_HEAD = 0x80 | Opcode.CLOSE


class Waker(Protocol):
    """What ``WsConnection.wait_with`` calls instead of waking a future's task: it is woken as a
    future is (``set_result(None)``), and reads in that call."""

    def set_result(self, result: None, /) -> None: ...


class SendRefused(IntEnum):
    """Why ``WsConnection.send`` sent nothing (negative, so any result < 0 is a refusal)."""

    CLOSED = -1  # the connection is not open
    NOT_DATA = -2  # neither text nor bytes
    BUFFER_FULL = -3  # the send buffer holds ``send_buffer_limit`` bytes: the peer is not reading


class WriteBatcher:
    """The connections of one loop with frames waiting to be written, and the one callback per
    loop turn that writes them (see the module docstring for why)."""

    __slots__ = ("_conns", "_scheduled", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._conns: list[WsConnection] = []
        self._scheduled = False

    def add(self, conn: WsConnection) -> None:
        self._conns.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        conns, self._conns = self._conns, []
        for conn in conns:
            conn.write_out()


class WsConnection(asyncio.Protocol):
    """One WebSocket connection over websockets' protocol core ``ws``.

    Read-only for everyone else: ``closed`` turns true when the peer's close frame or the end of
    the TCP stream has been seen, ``lost`` when the TCP connection is gone (``lost_exc`` says
    why); ``invalid_utf8`` says why a text message ended the connection; ``write_paused`` while
    the send buffer is above its high-water mark; ``last_write_ns`` when the last frame left.
    ``ws`` may be read for websockets' documented state (``state``, ``close_rcvd``, ``uri``).

    Kept small for the many-idle-connections case: slots, and futures only while someone waits
    (``_handshake`` only during the open)."""

    __slots__ = (
        "_batcher",
        "_deadline",
        "_direct_limit",
        "_direct_messages",
        "_direct_ok",
        "_direct_on",
        "_drain",
        "_dropped",
        "_fed",
        "_frag",
        "_frag_text",
        "_handshake",
        "_held_pong",
        "_lost_waiter",
        "_messages",
        "_out",
        "_paused_in",
        "_pending",
        "_pings",
        "_queued_bytes",
        "_reading_paused",
        "_send_direct",
        "_timer",
        "_timer_at",
        "_timers",
        "_trim",
        "_waiter",
        "_waker",
        "closed",
        "invalid_utf8",
        "last_write_ns",
        "loop",
        "lost",
        "lost_exc",
        "max_queued_bytes",
        "max_queued_messages",
        "send_buffer_limit",
        "transport",
        "write_paused",
        "ws",
    )

    def __init__(
        self,
        ws: ClientProtocol,
        loop: asyncio.AbstractEventLoop,
        *,
        max_queued_messages: int = MAX_QUEUED_MESSAGES,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        send_buffer_limit: int = SEND_BUFFER_LIMIT,
        batcher: WriteBatcher | None = None,
        timers: TimerHeap | None = None,
        direct_receive: bool | None = None,
        paused_in: set[WsConnection] | None = None,
    ) -> None:
        """``direct_receive``: use the direct receive path (default ``compat.DIRECT_RECEIVE``;
        never when websockets' internals are not the known ones)."""
        self.ws = ws
        self.loop = loop
        self.max_queued_messages = max_queued_messages
        self.max_queued_bytes = max_queued_bytes
        self.send_buffer_limit = send_buffer_limit
        self._batcher = batcher if batcher is not None else WriteBatcher(loop)
        self._timers = timers if timers is not None else TimerHeap(loop)  # the close's deadline
        self.transport: asyncio.Transport | None = None
        # --- receiving
        self._messages: deque[ReadResult] | None = None  # None until the first message
        self._queued_bytes = 0
        self._reading_paused = False
        self._pending: bytes | None = None  # received, not yet parsed, while reading is paused
        self._frag: bytearray | None = None  # a fragmented message so far
        self._frag_text = False
        self._dropped = 0  # bytes of a fragmented message cut by the peer's close frame
        self.invalid_utf8: str | None = None  # set when a text frame was not UTF-8
        self._direct_on = compat.INTERNALS_KNOWN and (
            compat.DIRECT_RECEIVE if direct_receive is None else direct_receive
        )
        # The direct path may take the next chunk: websockets' parser waits at a frame boundary
        # (looked at after each chunk websockets parsed). None once our close frame is out and
        # the parser waited so: the peer's close frame may then be taken directly.
        self._direct_ok: bool | None = False
        self._direct_limit = compat.direct_limit(ws)
        self._direct_messages = 0
        self._fed = False  # websockets' parser has been given bytes (then it parses the answer)
        # Still to do: run the frame loop alone once past the handshake (compat).
        self._trim = compat.INTERNALS_KNOWN
        # --- waiting for a message: one lazily re-armed timer per connection, not one per read
        self._waiter: asyncio.Future[None] | None = None
        self._waker: Waker | None = None  # ``wait_with``'s reader, instead of a future
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # --- sending
        self._out: bytes | bytearray | None = None  # frames sent in this turn, not yet written
        self._held_pong: bytes | None = None  # the pong kept back while the peer is not reading
        self._send_direct = False  # data frames encoded here (set once the open succeeded)
        self.last_write_ns = 0
        self.write_paused = False  # the send buffer is above its high-water mark
        # Its client's set of paused connections (``WebSocketClient.send_blocked``), or None.
        self._paused_in = paused_in
        self._drain: asyncio.Future[None] | None = None
        self._pings: dict[bytes, tuple[int, asyncio.Future[int]]] | None = None
        # --- the connection's life
        # True once the 101 answer was accepted, None when the connection ended first; dropped
        # after the open (the answer is not kept).
        self._handshake: asyncio.Future[bool | None] | None = loop.create_future()
        self.closed = False
        self.lost = False
        self._lost_waiter: asyncio.Future[None] | None = None
        self.lost_exc: BaseException | None = None

    # --- opening ------------------------------------------------------------------------------

    async def upgrade(self, headers: Iterable[tuple[str, str]], user_agent: str) -> bool:
        """Send the HTTP upgrade request (``headers`` replace defaults of the same name) and wait
        for the answer: True when the server accepted it. Raises websockets' ``InvalidHandshake``
        or ``ValueError`` for a request it will not send (``check_request`` lets none by)."""
        handshake = self._handshake
        assert handshake is not None, "upgrade() is called once, before opened()"
        ws = self.ws
        compat.send_upgrade_request(ws, headers, user_agent)
        self._flush()
        return bool(await handshake) and ws.handshake_exc is None

    def opened(self) -> None:
        """The open succeeded: let go of what only the open needed."""
        self._handshake = None
        # (the peer may have closed in the packet of its answer: then not open any more)
        self._send_direct = compat.plain_frames(self.ws) and not self.lost and self.ws.state is _OPEN

    @property
    def handshake_error(self) -> BaseException | None:
        """Why websockets refused the server's answer to the upgrade (``InvalidStatus``, ...)."""
        return self.ws.handshake_exc

    # --- asyncio callbacks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._pending is not None:  # paused: a transport may still hand over what it had read
            self._pending += data
            return
        self._receive(data)
        waker = self._waker
        if waker is not None and self._messages:
            # After the whole chunk, not as each message is queued: what came behind the message
            # (the peer's close, a protocol error) is known first, as a task reading later sees it.
            self._waker = None
            waker.set_result(None)

    def eof_received(self) -> bool | None:
        if compat.parser_failure(self.ws) is not None or self.invalid_utf8 is not None:
            self._set_closed()
            return None
        self.ws.receive_eof()
        self._handle(self.ws.events_received(), monotonic_ns())
        try:
            self._flush()  # (asyncio's own loop may refuse the end of stream: ENOTCONN)
        finally:
            self._set_closed()  # not open any more, also for ``send`` (see ``_set_closed``)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_exc = exc
        # Nothing waits to be sent any more (uvloop calls no resume_writing after a loss): not
        # paused, for the write step and for every count of blocked connections alike.
        self.write_paused = False
        if self._paused_in is not None:
            self._paused_in.discard(self)
        self._out = None  # nowhere to write it
        self._send_direct = False
        ws = self.ws
        pending, self._pending = self._pending, None
        if pending and compat.parser_failure(ws) is None and self.invalid_utf8 is None:
            with contextlib.suppress(Exception):  # what was kept aside still counts
                ws.receive_data(pending)
                self._handle(ws.events_received(), monotonic_ns())
        if ws.state is not State.CLOSED:
            with contextlib.suppress(Exception):  # already at EOF
                ws.receive_eof()
            ws.events_received()
        self._set_closed()
        self.lost = True
        self._frag = None  # an unfinished message never completes now
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_result(None)
        waiter, self._lost_waiter = self._lost_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        pings, self._pings = self._pings, None
        for _, fut in (pings or {}).values():
            if not fut.done():
                fut.set_result(-1)
        self._wake_drain()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._paused_in is not None:
            self._paused_in.add(self)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._paused_in is not None:
            self._paused_in.discard(self)
        pong, self._held_pong = self._held_pong, None
        transport = self.transport
        if pong is not None and transport is not None and not self.lost and not transport.is_closing():
            transport.write(pong)
        self._wake_drain()

    # --- receiving ----------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        now = monotonic_ns()
        if self._handshake is not None and not self._fed and self._direct_on:
            # The first bytes of the connection: a plain 101 answer is taken without websockets'
            # parser (``compat.accept_answer``), and the frames behind it as usual.
            if type(data) is not bytes:
                data = bytes(data)
            start = compat.accept_answer(self.ws, data)
            if start is not None:
                self._fed = True
                self._trim = False  # the frame loop runs alone already
                self._flush()  # whatever the protocol still had to send, as after any parse
                handshake = self._handshake
                if not handshake.done():
                    handshake.set_result(True)
                self._direct_ok = compat.direct_receive_ready(self.ws)
                if start < len(data):
                    self._receive(data[start:])
                return
        if self._direct_ok and self._frag is None:  # (``_direct_ok``: open, see ``_set_closed``)
            if type(data) is not bytes:
                data = bytes(data)
            pos = take_data_frames(data, self._direct_limit, self, now)
            if pos == len(data):  # the per-message case: all taken
                if self.invalid_utf8 is not None:
                    self._flush()  # the close frame with 1007
                return
            if pos:
                if self.invalid_utf8 is not None:
                    self._flush()  # the close frame with 1007; the rest is not processed
                    return
                if self._over_limit():  # the sink paused reading: keep the rest aside
                    self._pending = data[pos:]
                    return
                self._feed(memoryview(data)[pos:], now)
                return
        elif self._direct_ok is None:  # our close frame is out (``close``): the answer, usually
            self._direct_ok = False
            end = compat.take_close_frame(self.ws, data)
            if end is not None:
                self._handle(self.ws.events_received(), now)
                self._flush()
                if end < len(data):
                    self._feed(memoryview(data)[end:], now)
                return
        self._feed(data, now)

    def direct_text(self, payload: bytes, now: int) -> bool:
        """A text frame from the direct path (``DirectSink``); True to stop: not UTF-8, or the
        queue is full (then reading is paused)."""
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            self._fail_text(exc)
            return True
        self._direct_messages += 1
        if self._deliver(text, now):
            self._pause_reading()
            return True
        return False

    def direct_binary(self, payload: bytes, now: int) -> bool:
        """A binary frame from the direct path (``DirectSink``); True to stop: the queue is full
        (then reading is paused)."""
        self._direct_messages += 1
        if self._deliver(payload, now):
            self._pause_reading()
            return True
        return False

    def _feed(self, data: bytes | memoryview, now: int) -> None:
        """Hand ``data`` to websockets' parser, in slices of ``FEED_CHUNK``, and handle its events."""
        self._fed = True
        ws = self.ws
        size = len(data)
        view = memoryview(data) if size > FEED_CHUNK else None
        pos = 0
        while True:
            chunk = data if view is None else view[pos : pos + FEED_CHUNK]
            pos += len(chunk)
            ws.receive_data(chunk)  # type: ignore[arg-type]  # any bytes-like is accepted
            events = ws.events_received()
            if events:
                self._handle(events, now)
            if self.invalid_utf8 is not None or compat.parser_failure(ws) is not None:
                self._frag = None  # a protocol error or a too big message: no more messages
                self._set_closed()
                break
            if pos >= size:
                break
            if self._over_limit():
                assert view is not None
                self._pending = bytes(view[pos:])
                self._pause_reading()
                break
        if self._over_limit():
            self._pause_reading()
        self._flush()
        handshake = self._handshake
        if handshake is not None and ws.handshake_exc is not None and not handshake.done():
            handshake.set_result(False)  # a malformed answer: fail the open now, not at EOF
        if self._direct_on or self._trim:
            self._look_at_parser()

    def _look_at_parser(self) -> None:
        """After websockets parsed a chunk: may the direct path take the next one, and is it time
        to run the frame loop alone (once past the handshake)?"""
        ready = self.invalid_utf8 is None and compat.direct_receive_ready(self.ws)
        self._direct_ok = ready and self._direct_on
        if ready and self._trim:
            compat.run_frame_loop_alone(self.ws)
            self._trim = False

    def _handle(self, events: Sequence[object], now: int) -> None:
        """websockets' events: messages (fragments gathered in one buffer), pongs, the close."""
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is _TEXT or opcode is _BINARY:
                    payload = bytes(event.data)  # no copy: the parser yields bytes
                    if event.fin:
                        if opcode is _TEXT:
                            self._deliver_text(payload, now)
                            if self.invalid_utf8 is not None:
                                return  # the connection failed: nothing after this counts
                        else:
                            self._deliver(payload, now)
                    else:
                        self._frag = bytearray(payload)
                        self._frag_text = opcode is _TEXT
                elif opcode is _CONT:
                    frag = self._frag
                    assert frag is not None  # the frame loop fails a continuation out of the blue
                    frag += event.data
                    if event.fin:
                        self._frag = None
                        if self._frag_text:
                            self._deliver_text(frag, now)  # decoded from the bytearray: no copy
                            if self.invalid_utf8 is not None:
                                return  # the connection failed: nothing after this counts
                        else:
                            self._deliver(bytes(frag), now)
                elif opcode is _PONG:
                    pings = self._pings
                    entry = pings.pop(bytes(event.data), None) if pings else None
                    if entry is not None and not entry[1].done():
                        entry[1].set_result(now - entry[0])
                elif opcode is _CLOSE:
                    frag = self._frag
                    if frag is not None:  # between fragments (RFC 6455 5.4): the message is cut
                        self._frag = None
                        self._dropped = len(frag)
                    self._set_closed()
            elif isinstance(event, Response):
                handshake = self._handshake
                if handshake is not None and not handshake.done():
                    handshake.set_result(True)

    def _deliver_text(self, payload: bytes | bytearray, now: int) -> None:
        """A text message, or (not UTF-8) the end of the connection with close code 1007."""
        if self.invalid_utf8 is not None:
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            self._fail_text(exc)
            return
        self._deliver(text, now)

    def _fail_text(self, exc: UnicodeDecodeError) -> None:
        self.invalid_utf8 = f"invalid UTF-8 in a text message ({exc.reason} at byte {exc.start})"
        self.ws.fail(1007, "invalid UTF-8")  # sends the close frame; the parser discards the rest
        self._set_closed()

    def _deliver(self, data: str | bytes, now: int) -> bool:
        """Queue a message and wake the reader; whether the queue is now over its limits."""
        messages = self._messages
        if messages is None:
            messages = self._messages = deque()
        messages.append(ReadResult(RC_OK, data, now))
        self._queued_bytes += len(data)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return len(messages) > self.max_queued_messages or self._queued_bytes > self.max_queued_bytes

    def _set_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Neither path may run once websockets' state has left OPEN: every way it leaves (the
        # peer's close frame, a parser failure, invalid UTF-8, the end of the stream) comes
        # here, and our own close frame goes through ``close``. So the per-message checks read
        # these two flags, not websockets' ``state`` property (two calls per round trip).
        self._direct_ok = False
        self._send_direct = False
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        waker = self._waker
        if waker is not None:  # once the callback that is closing us has finished
            self._waker = None
            self.loop.call_soon(waker.set_result, None)

    def _over_limit(self) -> bool:
        """Whether the unread messages, with the fragments of the message in progress, are over
        the queue limits (only while there is a message to read: pausing for a partial message
        alone would wait for ever; ``maxMessageSize`` bounds that one)."""
        messages = self._messages
        if not messages:
            return False
        frag = self._frag
        return (
            len(messages) > self.max_queued_messages
            or self._queued_bytes + (len(frag) if frag is not None else 0) > self.max_queued_bytes
        )

    def _pause_reading(self) -> None:
        transport = self.transport
        if self._reading_paused or transport is None or transport.is_closing():
            return
        self._reading_paused = True
        transport.pause_reading()

    def _resume_if_drained(self) -> None:
        """After a read: once the queue is below half its limits, parse what was kept aside and
        read from the socket again."""
        messages = self._messages
        if (
            messages is not None and len(messages) > self.max_queued_messages // 2
        ) or self._queued_bytes > self.max_queued_bytes // 2:
            return
        pending, self._pending = self._pending, None
        if pending:
            self._receive(pending)
            if self._pending is not None or self._over_limit():  # the queue filled up again
                return
        self._reading_paused = False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    # --- reading ------------------------------------------------------------------------------

    def receive_nowait(self) -> ReadResult | None:
        """The next queued message (rc 0), or None when none is queued: then ``closed`` says
        whether one can still come. Messages that came before the peer's close are all read
        first. The hot path of a load run: no future, no coroutine."""
        messages = self._messages
        if not messages:
            return None
        result = messages.popleft()
        self._queued_bytes -= len(result.data)  # type: ignore[arg-type]  # a message has data
        if self._reading_paused:
            self._resume_if_drained()
        return result

    def wait(self, deadline: float | None) -> asyncio.Future[None]:
        """A future done when a message is queued, the peer has closed, or ``deadline`` (loop
        time; None: no limit) has passed; then ``receive_nowait`` and ``closed`` say which.

        A future, not a coroutine: awaiting it directly saves a coroutine per waiting read
        (about 0.15 us of a 10 us round trip). Waiting readers share one future; the timer is
        moved only when a deadline is earlier than the armed one (``_arm``)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = self.loop.create_future()
        if deadline is not None:
            self._arm(deadline)
        else:
            self._deadline = None
        return waiter

    def wait_with(self, waker: Waker, deadline: float, *, idle: bool = False) -> bool:
        """``wait`` with the caller's own object instead of a future: ``waker.set_result(None)``
        is called once, so the caller reads in that callback without a task waking
        (``runner.engine.rounds``, where the measured reason is): at the end of the
        ``data_received`` that queued a message (after the whole chunk has been parsed and what
        the protocol had to answer written), in a callback of its own once the peer's close or
        the connection's loss has been taken in, or by the timer at ``deadline`` (loop time; then
        nothing is queued and the connection is not closed). False, and nothing registered,
        when a reader already waits: one connection has one waiting reader; with ``idle``, also
        when a message is queued or the connection is closed (the caller then reads at once)."""
        waiter = self._waiter
        if self._waker is not None or (waiter is not None and not waiter.done()):
            return False
        if idle and (self._messages or self.closed):
            return False
        self._waker = waker
        if self._timer is not None and self._timer_at <= deadline:
            self._deadline = deadline  # ``_arm``'s commonest case, without the call
        else:
            self._arm(deadline)
        return True

    def forget(self, waker: Waker) -> None:
        """Take back ``wait_with``'s registration if it has not fired."""
        if self._waker is waker:
            self._waker = None
            self._deadline = None

    def _arm(self, deadline: float) -> None:
        """Make sure a timer fires no later than ``deadline`` for the current waiter. A timer
        armed for a later time is moved; an earlier one is kept and re-armed when it fires, so
        a stream of quick reads creates no timer per read."""
        self._deadline = deadline
        timer = self._timer
        if timer is None or self._timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        waiter = self._waiter
        waker = self._waker
        if deadline is None or ((waiter is None or waiter.done()) and waker is None):
            return
        if self.loop.time() + 0.0005 >= deadline:  # loops may fire a timer up to ~1 ms early
            self._deadline = None
            if waker is not None:
                self._waker = None
                waker.set_result(None)
            if waiter is not None:
                self._waiter = None  # an idle connection keeps no future
                if not waiter.done():
                    waiter.set_result(None)
        else:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    @property
    def queued(self) -> tuple[int, int]:
        """Unread messages, and their bytes with those of the fragmented message still arriving."""
        messages = self._messages
        frag = self._frag
        return (
            len(messages) if messages is not None else 0,
            self._queued_bytes + (len(frag) if frag is not None else 0),
        )

    @property
    def direct_messages(self) -> int:
        """Messages the direct receive path parsed (0 with it off)."""
        return self._direct_messages

    @property
    def direct_receive(self) -> bool:
        """Whether this connection uses the direct receive path."""
        return self._direct_on

    @property
    def dropped(self) -> int:
        """Bytes of a fragmented message the peer's close frame cut short (0 if none)."""
        return self._dropped

    @property
    def parser_failure(self) -> BaseException | None:
        """What stopped websockets' parser (a protocol error, a too big message, the end of the
        stream in the middle of a frame), or None."""
        return compat.parser_failure(self.ws)

    # --- sending ------------------------------------------------------------------------------

    def send(self, data: str | bytes) -> int:
        """Send one message (text for str, binary for bytes): bytes of payload, or a negative
        ``SendRefused``. Refused while the transport holds ``send_buffer_limit`` bytes (checked
        only above its high-water mark): a peer that does not read cannot make us hold more
        than that plus one message.

        The per-message case (open, nothing negotiated, below the high-water mark) encodes the
        frame here and leaves it for the end of the loop turn; anything else goes through
        ``_send_checked``. Encoding here bypasses websockets' send state, which is safe because
        every call into the core is followed by ``_flush`` (its ``writes`` are empty whenever
        this runs) and no fragmented message is ever sent."""
        if self._send_direct and not self.write_paused:  # (``_send_direct``: open, see ``_set_closed``)
            if type(data) is str:
                encoded = data.encode()
                self._queue(encode_client_frame(1, encoded))
                return len(encoded)
            if type(data) is bytes:
                self._queue(encode_client_frame(2, data))
                return len(data)
        return self._send_checked(data)

    def _send_checked(self, data: str | bytes) -> int:
        if not self.is_open:
            return SendRefused.CLOSED
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            return SendRefused.NOT_DATA
        if self.write_paused and self.write_buffer_size >= self.send_buffer_limit:
            return SendRefused.BUFFER_FULL
        if self._send_direct and type(data) in (str, bytes):
            encoded = data.encode() if type(data) is str else data
            self._queue(encode_client_frame(1 if type(data) is str else 2, encoded))  # type: ignore[arg-type]
            return len(encoded)
        if isinstance(data, str):
            encoded = data.encode()
            self.ws.send_text(encoded)
        else:
            encoded = data
            self.ws.send_binary(data)
        self.last_write_ns = monotonic_ns()
        self._flush()
        return len(encoded)

    def _queue(self, frame: bytes | bytearray) -> None:
        """Keep ``frame`` for the end of the loop turn, or write it (and what waits) now when
        that makes ``WRITE_BATCH_BYTES`` or more. ``last_write_ns`` is set here too, so a read
        in this turn of a message that came before this write reports 0, not the time since
        the previous write; ``write_out`` moves it to when the frame leaves."""
        self.last_write_ns = monotonic_ns()
        out = self._out
        if out is None:
            if len(frame) < WRITE_BATCH_BYTES:
                self._out = frame
                self._batcher.add(self)
                return
        else:
            if type(out) is bytes:  # a second frame in this turn: append in place from now on
                out = self._out = bytearray(out)
            out += frame
            if len(out) < WRITE_BATCH_BYTES:
                return
            self._out = None  # the batcher finds nothing left to write for this connection
            frame = out
        self.transport.write(frame)  # type: ignore[union-attr]  # _send_direct: a transport

    def write_out(self) -> None:
        """Hand the frames kept for the end of the loop turn to the transport; a read's latency
        runs from here, when the request leaves (``last_write_ns``)."""
        out = self._out
        if out is None:
            return
        self._out = None
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return  # aborted in this turn: uvloop refuses writes to a closed transport
        self.last_write_ns = monotonic_ns()
        transport.write(out)

    def _flush(self) -> None:
        """Write what the protocol core wants sent (after the frames waiting for the end of the
        loop turn); an empty chunk means half-close."""
        transport = self.transport
        if transport is None:
            return
        if self._out is not None:
            self.write_out()
        for chunk in self.ws.data_to_send():  # one frame per chunk
            if chunk:
                head = chunk[0]
                if head == _PONG_HEAD and self.write_paused:
                    # A peer that pings without reading would otherwise grow our send buffer
                    # without bound; the pong for its latest ping is enough (RFC 6455 5.5.3),
                    # written when the buffer drains.
                    self._held_pong = chunk
                    continue
                if head == _CLOSE_HEAD:
                    self._held_pong = None
                transport.write(chunk)
            else:
                self._held_pong = None  # nothing may be written after the end of the stream
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()

    @property
    def write_buffer_size(self) -> int:
        """Bytes in the transport's send buffer (handed over, not yet taken by the kernel)."""
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    @property
    def send_buffered(self) -> int:
        """Bytes written but not yet handed to the kernel: in the transport's buffer, and kept
        for the end of the loop turn."""
        out = self._out
        return self.write_buffer_size + (len(out) if out is not None else 0)

    async def drain(self, deadline: float | None) -> None:
        """Wait while the send buffer is above its high-water mark (or until the connection is
        lost); TimeoutError at ``deadline`` (loop time)."""
        if not self.write_paused or self.lost:
            return
        if self._drain is None:
            self._drain = self.loop.create_future()
        async with asyncio.timeout_at(deadline):
            await self._drain

    def _wake_drain(self) -> None:
        fut = self._drain
        if fut is not None:
            self._drain = None
            if not fut.done():
                fut.set_result(None)

    # --- pings and the close ------------------------------------------------------------------

    async def ping(self, deadline: float | None) -> int | None:
        """Send a ping and wait for its pong: the round-trip time in ns, None when the
        connection was lost first; TimeoutError at ``deadline`` (loop time)."""
        payload = os.urandom(4)
        fut: asyncio.Future[int] = self.loop.create_future()
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        pings[payload] = (monotonic_ns(), fut)
        self.ws.send_ping(payload)
        self._flush()
        try:
            async with asyncio.timeout_at(deadline):
                rtt = await fut
        except TimeoutError:
            if self._pings is not None:
                self._pings.pop(payload, None)
            raise
        return rtt if rtt >= 0 else None

    async def close(self, deadline: float | None) -> None:
        """Send a close frame (if open), wait until ``deadline`` for the server to end the TCP
        connection, then drop it anyway."""
        transport = self.transport
        if transport is None:
            return
        if self.ws.state is _OPEN and not self.lost:
            # Closing now (see ``_set_closed``); None: the parser waits between frames, so the
            # peer's close frame may be taken directly (``_receive``).
            self._direct_ok = None if self._direct_ok else False
            self._send_direct = False
            self.ws.send_close(1000)
            self._flush()
        if not self.lost:
            # A future of this call's own, done when the connection is gone or at the deadline:
            # cancelling it leaves the connection's alone. What ``asyncio.shield`` under an
            # ``asyncio.timeout_at`` did, without their extra future, task look-ups and getpid()
            # calls (5% of an open and close in the S2 benchmark); the deadline on the client's
            # ``TimerHeap``, as the open's (a cancelled loop timer lives until a full collection).
            done = self.loop.create_future()
            self._lost_future().add_done_callback(partial(settle, done))
            timer = self._timers.call_at(deadline, done) if deadline is not None else None
            try:
                await done
            finally:
                if timer is not None:
                    timer.cancel()
        transport.abort() if not self.lost else transport.close()

    def abort(self) -> None:
        """Drop the TCP connection at once (an open that failed or ran out of time)."""
        if self.transport is not None:
            self.transport.abort()

    def _lost_future(self) -> asyncio.Future[None]:
        """A future done when the TCP connection is gone (created on demand)."""
        waiter = self._lost_waiter
        if waiter is None:
            waiter = self.loop.create_future()
            if self.lost:
                waiter.set_result(None)
            else:
                self._lost_waiter = waiter
        return waiter

    # --- state --------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.ws.state is _OPEN and not self.lost

    def holding(self) -> tuple[str, ...]:
        """What this connection holds beyond its fixed slots (the message queue, futures, the
        ping table, a partial message, the parsed HTTP answer), by name: an idle connection
        holds nothing, which keeps 50,000 of them small (row 2 of the benchmarks)."""
        held = {
            "message queue": self._messages is not None,
            "handshake future": self._handshake is not None,
            "ping table": self._pings is not None,
            "read waiter": self._waiter is not None or self._waker is not None,
            "drain future": self._drain is not None,
            "lost future": self._lost_waiter is not None,
            "partial message": self._frag is not None,
            "unparsed bytes": self._pending is not None,
            "HTTP answer": compat.INTERNALS_KNOWN and compat.holds_http_answer(self.ws),
        }
        return tuple(name for name, present in held.items() if present)
