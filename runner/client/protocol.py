"""``WsConnection``: an ``asyncio.Protocol`` that moves bytes between the transport and websockets'
Sans-I/O ``ClientProtocol``, and queues whole messages stamped with the time they were parsed.

Chosen over websockets' own asyncio API by benchmark (bench/bench_client_roundtrip.py): no task
per connection or per message, a read of an already queued message creates no future, and a
waiting read uses one future per connection.

Memory stays bounded against a hostile peer. Received bytes are fed to the parser in slices of
``FEED_CHUNK``; once the queue of unread messages holds more than ``max_queued_messages`` or
``max_queued_bytes``, the rest of the chunk is kept aside and reading from the transport is paused
(TCP flow control then slows the sender); it resumes when reads have taken the queue below half.
A frame header announcing more than the message size limit fails at once (websockets checks the
length before reading the payload). Sending is bounded by the client (``send_buffer_limit``), and
the automatic pongs to a peer that pings without reading are too: while the send buffer is above
its high-water mark only the pong for the latest ping is kept, and written when it drains.

Receiving has a direct path: while the connection is open, without extensions, with no fragmented
message in progress and websockets' parser waiting for the first byte of a frame, the whole,
final, unmasked text and binary frames with a 7- or 16-bit length at the start of a chunk are
parsed here, without websockets' generator parser (about 2 us per message). From the first frame
of any other kind (control, fragment, masked, reserved bits, 64-bit length, too big, incomplete)
the rest of the chunk goes to websockets as before. Each byte goes to exactly one of the two
parsers, in stream order, and the direct path only runs where websockets' parser would start a
new frame (``ws_at_frame_boundary``), so websockets sees a stream of whole frames with some
data frames taken out; its state does not depend on data frames outside a fragmented message.
Nothing after a text frame that is not UTF-8 is processed (RFC 6455 7.1.7), on either path.

Sending is batched per loop turn: a data frame is kept on its connection (frames sent to one
connection in the same turn are joined) and ``WriteBatcher`` hands all of them to their transports
from one callback, after the code running in this turn has had its say. One burst of writes per
turn instead of one write between every two steps lets the peer process a batch per wake-up; on
loopback the kernel's receive path (and the peer's wake-up) runs in the sender's system call, so
this cut the client's CPU per round trip by about a third (bench/README.md). Frames of
``WRITE_BATCH_BYTES`` or more, and anything the protocol core sends (close, pong, ping), go out at
once, after whatever was waiting on that connection, so order on the wire is the order of calls.
An idle connection is kept small (row 2 of the benchmarks): slots, no message queue before the
first message, futures only while someone waits, and, once past the handshake, websockets' frame
loop runs on its own instead of inside ``ClientProtocol.parse``, whose frame held the 101 answer.

The frame loop is our own (``WsClientProtocol``: websockets' ``Protocol.parse`` with its
``Frame.parse`` inlined), for what websockets 17 does otherwise: a 64-bit length with the top bit
set is a protocol error (1002, RFC 6455 5.2), not "too big"; a close frame between the fragments
of a message ends the connection normally (control frames may come between fragments, 5.4);
with permessage-deflate ``maxMessageSize`` limits the message after decompression, not the
compressed frame (which may be slightly larger than the message it carries); and a message may
have at most ``MAX_FRAGMENTS`` fragments (1009 beyond), so endless empty continuation frames end.
The fragments of a message are gathered in one ``bytearray``: no object per fragment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections import deque
from collections.abc import Generator, Sequence
from time import monotonic_ns

from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig, ProtocolError, TooManyFragments
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Protocol, State
from websockets.streams import StreamReader

try:  # websockets' C helper; the same pure-Python fallback websockets itself uses otherwise
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the wheel ships the extension
    from websockets.utils import apply_mask

__all__ = [
    "FEED_CHUNK",
    "MAX_FRAGMENTS",
    "MAX_QUEUED_BYTES",
    "MAX_QUEUED_MESSAGES",
    "WRITE_BATCH_BYTES",
    "WriteBatcher",
    "WsClientProtocol",
    "WsConnection",
    "encode_client_frame",
    "ws_at_frame_boundary",
]

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
#: Frames one message may come in (the first and its continuations); beyond, the connection
#: fails with 1009. Bounds the time a peer can keep us busy with empty continuation frames
#: (they add nothing to the message's size); websockets' own asyncio API allows 4,096.
MAX_FRAGMENTS = 65536

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
_OPEN = State.OPEN
_PONG_HEAD = 0x80 | Opcode.PONG  # first byte of a whole pong frame
_CLOSE_HEAD = 0x80 | Opcode.CLOSE

#: Bytes of mask keys drawn from the OS CSPRNG at a time: one ``getrandom`` per 1,024 frames
#: instead of one per frame (websockets' ``secrets.token_bytes(4)``; 6% of a round trip).
MASK_POOL_BYTES = 4096
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


class _MaskKeys:
    """Client mask keys (RFC 6455 5.3: unpredictable, from a strong source) served 4 bytes at a
    time from a pooled ``os.urandom`` buffer; no key is ever handed out twice."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = MASK_POOL_BYTES

    def next(self) -> bytes:
        pos = self._pos
        if pos >= MASK_POOL_BYTES:
            self._buf = os.urandom(MASK_POOL_BYTES)
            pos = 0
        self._pos = pos + 4
        return self._buf[pos : pos + 4]


_MASK_KEYS = _MaskKeys()

_NO_LIMIT = 1 << 63
_CTRL_OPCODES = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))


def _wire_limit(limit: int) -> int:
    """The longest compressed frame accepted for ``limit`` bytes of message left: deflate can
    make incompressible data larger (by about 1% with a 512-byte window, as stored blocks; at
    most 13% with fixed codes), so the frame may be a quarter larger; the decompressed message
    is held to ``limit`` itself."""
    return limit + (limit >> 2) + 1024


class _InflatedTooBig(PayloadTooBig):
    """A compressed frame that decompresses to more than the limit."""

    def __str__(self) -> str:
        return f"{super().__str__()} once decompressed"


class _FrameLoop(Protocol):
    """websockets' frame loop with the changes listed in the module docstring. A class of its
    own so that ``ClientProtocol.parse``'s ``super().parse()`` (after the handshake) runs it:
    ``WsClientProtocol``'s method order is ClientProtocol, _FrameLoop, Protocol."""

    def parse(self) -> Generator[None]:
        """``Protocol.parse`` with ``Frame.parse`` inlined; never raises (sets ``parser_exc``)."""
        reader = self.reader
        read_exact = reader.read_exact
        fragments = 0  # frames of the message in progress
        try:
            while True:
                if (yield from reader.at_eof()):
                    raise EOFError("unexpected end of stream")
                data = yield from read_exact(2)
                head1 = data[0]
                head2 = data[1]
                try:
                    opcode = Opcode(head1 & 0x0F)
                except ValueError as exc:
                    raise ProtocolError("invalid opcode") from exc
                if head2 & 0x80:
                    raise ProtocolError("incorrect masking")
                length = head2 & 0x7F
                if length == 126:
                    data = yield from read_exact(2)
                    length = (data[0] << 8) | data[1]
                elif length == 127:
                    data = yield from read_exact(8)
                    length = int.from_bytes(data, "big")
                    if length >> 63:
                        raise ProtocolError(
                            "invalid frame length: the most significant bit of a 64-bit length "
                            "must be 0 (RFC 6455 5.2)"
                        )
                if length > 125 and opcode in _CTRL_OPCODES:
                    raise ProtocolError("control frame too long")  # before reading it
                limit = self.max_message_size
                if limit is not None and self.current_size is not None:
                    limit -= self.current_size
                if self.max_fragment_size is not None:
                    limit = self.max_fragment_size if limit is None else min(limit, self.max_fragment_size)
                extensions = self.extensions
                if limit is not None and length > (_wire_limit(limit) if extensions else limit):
                    raise PayloadTooBig(length, limit)
                payload = yield from read_exact(length)
                fin = head1 & 0x80 != 0
                frame = Frame(opcode, payload, fin, head1 & 0x40 != 0, head1 & 0x20 != 0, head1 & 0x10 != 0)
                if extensions:
                    try:
                        for extension in reversed(extensions):
                            frame = extension.decode(frame, max_size=limit)
                    except PayloadTooBig as exc:
                        raise _InflatedTooBig(exc.size, limit) from None  # type: ignore[arg-type]
                    if limit is not None and len(frame.data) > limit:  # a frame sent uncompressed
                        raise PayloadTooBig(len(frame.data), limit)
                frame.check()
                if opcode is _CONT:
                    fragments += 1
                    if fragments > MAX_FRAGMENTS:
                        raise TooManyFragments(MAX_FRAGMENTS)
                    if fin:
                        fragments = 0
                elif opcode is _TEXT or opcode is _BINARY:
                    fragments = 0 if fin else 1
                self.recv_frame(frame)
        except ProtocolError as exc:
            self.fail(1002, str(exc))
            self.parser_exc = exc
        except EOFError as exc:
            self.fail(1006, str(exc))
            self.parser_exc = exc
        except UnicodeDecodeError as exc:
            self.fail(1007, f"{exc.reason} at position {exc.start}")
            self.parser_exc = exc
        except PayloadTooBig as exc:
            exc.set_current_size(self.current_size)
            self.fail(1009, str(exc))
            self.parser_exc = exc
        except TooManyFragments as exc:
            self.fail(1009, "too many fragments")
            self.parser_exc = exc
        except Exception as exc:
            self.logger.error("parser failed", exc_info=True)
            self.fail(1011)
            self.parser_exc = exc
        # After a failure, fail() replaced this generator with discard().
        yield
        raise AssertionError("parse() shouldn't step after error")

    def recv_frame(self, frame: Frame) -> None:
        """websockets' ``recv_frame``, but a close frame between the fragments of a message is
        the peer's close (RFC 6455 5.4 lets control frames come between fragments), not the
        protocol error "incomplete fragmented message": the unfinished message is dropped."""
        if frame.opcode is _CLOSE and self.current_size is not None:
            self.current_size = None
        super().recv_frame(frame)


class WsClientProtocol(ClientProtocol, _FrameLoop):
    """websockets' ``ClientProtocol`` (handshake, control frames, closing) with our frame loop."""


_FRAME_LOOP = _FrameLoop.parse.__code__  # our loop: one frame per turn
_AT_EOF = StreamReader.at_eof.__code__  # where that loop waits between frames


def _message_limit(ws: Protocol) -> int:
    """The longest frame the direct path may take: websockets' message size limit
    (``max_message_size``, or ``max_size`` in older releases), any length when it is None; -1
    (no frame at all: all go to websockets) when the limit cannot be read as one number."""
    for name in ("max_message_size", "max_size"):
        if hasattr(ws, name):
            limit = getattr(ws, name)
            if limit is None:
                return _NO_LIMIT
            return limit if type(limit) is int else -1
    return -1


def ws_at_frame_boundary(ws: Protocol) -> bool:
    """Whether websockets' parser is suspended at the top of its frame loop with nothing
    buffered, so the next byte it would be given starts a frame.

    Read from the suspended generators (``gi_yieldfrom``): the innermost one is
    ``StreamReader.at_eof`` (which only waits on an empty buffer) called from our frame loop
    (``WsClientProtocol``). After a header or part of a payload it is ``read_exact``; after a
    close or a failure it is ``discard``. Anything unrecognised (another websockets version, a
    protocol object that is not a ``WsClientProtocol``) answers False, which only turns the
    direct path off."""
    outer = None
    gen = ws.parser
    for _ in range(8):  # ClientProtocol.parse -> _FrameLoop.parse -> StreamReader.at_eof
        inner = getattr(gen, "gi_yieldfrom", None)
        if inner is None:
            break
        outer, gen = gen, inner
    return (
        getattr(gen, "gi_code", None) is _AT_EOF
        and getattr(outer, "gi_code", None) is _FRAME_LOOP
        and not ws.reader.buffer
    )


#: The two header bytes of a masked final frame with a 7-bit length, per opcode (text 1,
#: binary 2) and length: made once instead of a ``bytes`` per message.
_SHORT_HEADS: dict[int, tuple[bytes, ...]] = {
    op: tuple(bytes((0x80 | op, 0x80 | n)) for n in range(126)) for op in (1, 2)
}


def encode_client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, final, extension-less data frame (RFC 6455 5.2): the bytes websockets'
    ``Frame.serialize(mask=True)`` gives, without its ``Frame`` object, ``BytesIO`` and
    per-frame ``getrandom`` call."""
    length = len(payload)
    mask = _MASK_KEYS.next()
    if length < 126:
        head = _SHORT_HEADS[opcode][length]
    elif length < 65536:
        head = _PACK_16(0x80 | opcode, 0x80 | 126, length)
    else:
        head = _PACK_64(0x80 | opcode, 0x80 | 127, length)
    return b"".join((head, mask, apply_mask(payload, mask)))


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
    """One WebSocket connection. ``messages`` holds ``(data, received_ns)`` (None until the first
    message: an idle connection holds no queue); ``closed`` turns true when the peer's close frame
    or the end of the TCP stream has been seen, ``lost`` when the TCP connection is gone.

    Kept small for the many-idle-connections case: slots, and futures only while someone waits
    (``handshake`` only during the open)."""

    __slots__ = (
        "_batcher",
        "_direct_limit",
        "_direct_ok",
        "_drain",
        "_dropped",
        "_frag",
        "_frag_text",
        "_held_pong",
        "_lost_waiter",
        "_out",
        "_pending",
        "_timer",
        "_timer_at",
        "closed",
        "deadline",
        "handshake",
        "invalid_utf8",
        "last_write_ns",
        "loop",
        "lost",
        "lost_exc",
        "max_queued_bytes",
        "max_queued_messages",
        "messages",
        "pings",
        "queued_bytes",
        "reading_paused",
        "transport",
        "waiter",
        "write_paused",
        "ws",
    )

    def __init__(
        self,
        ws: WsClientProtocol,
        loop: asyncio.AbstractEventLoop,
        *,
        max_queued_messages: int = MAX_QUEUED_MESSAGES,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        batcher: WriteBatcher | None = None,
    ) -> None:
        self.ws = ws
        self.loop = loop
        self._batcher = batcher if batcher is not None else WriteBatcher(loop)
        self._out: bytes | bytearray | None = None  # frames sent in this turn, not yet written
        self._held_pong: bytes | None = None  # the pong kept back while the peer is not reading
        self.transport: asyncio.Transport | None = None
        self.messages: deque[tuple[str | bytes, int]] | None = None
        self.queued_bytes = 0
        self.max_queued_messages = max_queued_messages
        self.max_queued_bytes = max_queued_bytes
        self.reading_paused = False
        self._pending: bytes | None = None  # received, not yet parsed, while reading is paused
        self.invalid_utf8: str | None = None  # set when a text frame was not UTF-8
        # The direct receive path may run: websockets' parser waits at a frame boundary (set
        # after each chunk websockets parsed; websockets' own state is checked as well).
        self._direct_ok = False
        self._direct_limit = _message_limit(ws)
        self.waiter: asyncio.Future[None] | None = None
        # True once the 101 answer was accepted, None when the connection ended first; the
        # client drops it after the open (and the answer is not kept).
        self.handshake: asyncio.Future[bool | None] | None = loop.create_future()
        self.closed = False
        self.lost = False
        self._lost_waiter: asyncio.Future[None] | None = None
        self.lost_exc: BaseException | None = None
        self.pings: dict[bytes, tuple[int, asyncio.Future[int]]] | None = None
        self.last_write_ns = 0
        self._frag: bytearray | None = None  # a fragmented message so far
        self._dropped = 0  # bytes of a fragmented message cut by the peer's close frame
        self._frag_text = False
        self.write_paused = False  # the send buffer is above its high-water mark
        self._drain: asyncio.Future[None] | None = None
        # Read time-outs: one lazily re-armed timer per connection instead of one per read.
        self.deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # --- asyncio callbacks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._pending is not None:  # paused: a transport may still hand over what it had read
            self._pending += data
            return
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        now = monotonic_ns()
        if self._direct_ok and self.ws.state is _OPEN and self._frag is None:
            if type(data) is not bytes:
                data = bytes(data)
            pos = self._receive_direct(data, now)
            if pos >= len(data):
                if self.invalid_utf8 is not None:
                    self._flush()  # the close frame with 1007
                return
            if pos:
                self._feed(memoryview(data)[pos:], now)
                return
        self._feed(data, now)

    def _receive_direct(self, data: bytes, now: int) -> int:
        """Deliver the whole, final, unmasked text and binary frames (7- or 16-bit length, not
        above the message size limit) at the start of ``data``; the offset of the first byte
        left for websockets' parser. ``len(data)`` also when the rest is not to be parsed now:
        kept aside because the queue went over its limits (reading pauses), or dropped after
        invalid UTF-8 (the connection failed, as websockets' parser would discard it)."""
        size = len(data)
        limit = self._direct_limit
        max_messages = self.max_queued_messages
        max_bytes = self.max_queued_bytes
        pos = 0
        while size - pos >= 2:
            head = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length >= 126:  # 126: a 16-bit length follows; 127 (64-bit) or masked: websockets
                if length != 126 or size - start < 2:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
            end = start + length
            if end > size or length > limit:
                break
            if head == 0x81:
                self._deliver_text(data[start:end], now)
                if self.invalid_utf8 is not None:
                    return size
            elif head == 0x82:
                self._deliver(data[start:end], now)
            else:
                break
            pos = end
            queue = self.messages
            if self.queued_bytes > max_bytes or (queue is not None and len(queue) > max_messages):
                if pos < size:
                    self._pending = data[pos:]
                self._pause_reading()
                return size
        return pos

    def _feed(self, data: bytes | memoryview, now: int) -> None:
        """Hand ``data`` to websockets' parser, in slices of ``FEED_CHUNK``, and handle its events."""
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
            if ws.parser_exc is not None or self.invalid_utf8 is not None:
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
        handshake = self.handshake
        if handshake is not None and ws.handshake_exc is not None and not handshake.done():
            handshake.set_result(False)  # a malformed answer: fail the open now, not at EOF
        self._direct_ok = direct = (
            ws.state is _OPEN
            and not ws.extensions
            and not ws.debug
            and getattr(ws, "current_size", None) is None
            and getattr(ws, "max_fragment_size", None) is None
            and ws.parser_exc is None
            and self.invalid_utf8 is None
            and ws_at_frame_boundary(ws)
        )
        if direct and getattr(ws.parser, "gi_code", None) is not _FRAME_LOOP:
            # Past the handshake, between frames: run the frame loop on its own. The generator
            # it ran in (ClientProtocol.parse) holds the parsed HTTP answer, about 1.3 KiB of
            # headers, for as long as the connection lives.
            ws.parser = _FrameLoop.parse(ws)
            next(ws.parser)

    def eof_received(self) -> bool | None:
        if self.ws.parser_exc is not None or self.invalid_utf8 is not None:
            self._set_closed()
            return None
        self.ws.receive_eof()
        self._handle(self.ws.events_received(), monotonic_ns())
        self._flush()
        self._set_closed()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_exc = exc
        self._out = None  # nowhere to write it
        pending, self._pending = self._pending, None
        if pending and self.ws.parser_exc is None and self.invalid_utf8 is None:
            with contextlib.suppress(Exception):  # what was kept aside still counts
                self.ws.receive_data(pending)
                self._handle(self.ws.events_received(), monotonic_ns())
        if self.ws.state is not State.CLOSED:
            with contextlib.suppress(Exception):  # already at EOF
                self.ws.receive_eof()
            self.ws.events_received()
        self._set_closed()
        self.lost = True
        self._frag = None  # an unfinished message never completes now
        handshake = self.handshake
        if handshake is not None and not handshake.done():
            handshake.set_result(None)
        waiter, self._lost_waiter = self._lost_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        pings, self.pings = self.pings, None
        for _, fut in (pings or {}).values():
            if not fut.done():
                fut.set_result(-1)
        self._wake_drain()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        pong, self._held_pong = self._held_pong, None
        transport = self.transport
        if pong is not None and transport is not None and not self.lost and not transport.is_closing():
            transport.write(pong)
        self._wake_drain()

    # --- the work -----------------------------------------------------------------------------

    def _handle(self, events: Sequence[object], now: int) -> None:
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
                    pings = self.pings
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
                handshake = self.handshake
                if handshake is not None and not handshake.done():
                    handshake.set_result(True)

    def _deliver_text(self, payload: bytes | bytearray, now: int) -> None:
        """A text message, or (not UTF-8) the end of the connection with close code 1007."""
        if self.invalid_utf8 is not None:
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            self.invalid_utf8 = f"invalid UTF-8 in a text message ({exc.reason} at byte {exc.start})"
            self.ws.fail(1007, "invalid UTF-8")  # sends the close frame; the parser discards the rest
            self._set_closed()
            return
        self._deliver(text, now)

    def _deliver(self, data: str | bytes, now: int) -> None:
        messages = self.messages
        if messages is None:
            messages = self.messages = deque()
        messages.append((data, now))
        self.queued_bytes += len(data)
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

    def _over_limit(self) -> bool:
        """Whether the unread messages, with the fragments of the message in progress, are over
        the queue limits (only while there is a message to read: pausing for a partial message
        alone would wait for ever; ``maxMessageSize`` bounds that one)."""
        messages = self.messages
        if not messages:
            return False
        frag = self._frag
        return (
            len(messages) > self.max_queued_messages
            or self.queued_bytes + (len(frag) if frag is not None else 0) > self.max_queued_bytes
        )

    def _pause_reading(self) -> None:
        transport = self.transport
        if self.reading_paused or transport is None or transport.is_closing():
            return
        self.reading_paused = True
        transport.pause_reading()

    def resume_if_drained(self) -> None:
        """After a read: once the queue is below half its limits, parse what was kept aside and
        read from the socket again."""
        messages = self.messages
        if (
            messages is not None and len(messages) > self.max_queued_messages // 2
        ) or self.queued_bytes > self.max_queued_bytes // 2:
            return
        pending, self._pending = self._pending, None
        if pending:
            self._receive(pending)
            if self._pending is not None or self._over_limit():  # the queue filled up again
                return
        self.reading_paused = False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    # --- used by the client -------------------------------------------------------------------

    @property
    def partial_in(self) -> int:
        """Bytes of the fragmented message still arriving."""
        frag = self._frag
        return len(frag) if frag is not None else 0

    @property
    def dropped(self) -> int:
        """Bytes of a fragmented message the peer's close frame cut short (0 if none)."""
        return self._dropped

    @property
    def is_open(self) -> bool:
        return self.ws.state is _OPEN and not self.lost

    def opened(self) -> None:
        """The open succeeded: let go of what only the open needed."""
        self.handshake = None

    def lost_future(self) -> asyncio.Future[None]:
        """A future done when the TCP connection is gone (created on demand)."""
        waiter = self._lost_waiter
        if waiter is None:
            waiter = self.loop.create_future()
            if self.lost:
                waiter.set_result(None)
            else:
                self._lost_waiter = waiter
        return waiter

    def send(self, data: str | bytes) -> int:
        """Queue one message (text for str, binary for bytes); bytes of payload.

        The common case (open, no extension negotiated, nothing else queued by the protocol core,
        no fragmented message in progress) encodes the frame here and leaves it for the end of
        the loop turn; anything else goes through websockets, which then also raises for a
        wrong state."""
        ws = self.ws
        if (
            self.transport is not None
            and ws.state is _OPEN
            and not ws.extensions
            and not ws.writes
            and not ws.expect_continuation_frame
            and not ws.debug
        ):
            if type(data) is str:
                encoded = data.encode()
                self._queue(encode_client_frame(1, encoded))
                return len(encoded)
            if type(data) is bytes:
                self._queue(encode_client_frame(2, data))
                return len(data)
        return self._send_via_core(data)

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
        self.transport.write(frame)  # type: ignore[union-attr]  # checked by send

    @property
    def pending_out(self) -> int:
        """Bytes kept for the end of the loop turn."""
        return len(self._out) if self._out is not None else 0

    def write_out(self) -> None:
        """Hand the frames kept for the end of the loop turn to the transport; a read's latency
        runs from here, when the request leaves (see ``client.read``'s callers)."""
        out = self._out
        if out is None:
            return
        self._out = None
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return  # aborted in this turn: uvloop refuses writes to a closed transport
        self.last_write_ns = monotonic_ns()
        transport.write(out)

    def _send_via_core(self, data: str | bytes) -> int:
        """``send`` through websockets' ``send_text``/``send_binary`` (and its state checks)."""
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
        if self.write_paused and not self.lost:
            if self._drain is None:
                self._drain = self.loop.create_future()
            await self._drain
