"""Every use of websockets' internals, in one place, checked when it is imported.

The connection layer drives websockets' Sans-I/O ``ClientProtocol`` through its public API
(``connect``, ``send_request``, ``receive_data``, ``events_received``, ``data_to_send``,
``send_*``, ``fail``, ``state``, ``close_rcvd``, ``handshake_exc``). Three speed and memory
tricks need more than that, and all of them live here:

- our own frame loop (``WsClientProtocol``: websockets' ``Protocol.parse`` with ``Frame.parse``
  inlined, for the behaviours listed in ``_FrameLoop``), which overrides a private method and
  reads the protocol's private parser state (``reader``, ``current_size``, ...);
- the direct receive path (``runner.client.direct``) may only take bytes while websockets' parser
  waits at a frame boundary: read from its suspended generators (``gi_yieldfrom``,
  ``direct_receive_ready``);
- once past the handshake the frame loop is run on its own instead of inside
  ``ClientProtocol.parse``, whose frame holds the parsed 101 answer (``run_frame_loop_alone``),
  and it is started only when websockets must parse a frame (``WsClientProtocol.receive_data``):
  ``parser`` is None until then. Before the answer, websockets' parser is started by the first
  bytes that need it (``_ANSWER_PARSER_NOT_STARTED`` until then).

These were written for websockets 17.0-17.4 (``KNOWN_VERSIONS``). At import the installed
version is compared with those, and a self-test feeds a canned handshake and frames through
the functions below; if either fails, ``INTERNALS_KNOWN`` is False and none of the tricks is
used: connections get websockets' own ``ClientProtocol``, whose parser does all the work (the
behaviours of our frame loop are then websockets' own, e.g. no limit on the number of
fragments). ``DIRECT_RECEIVE`` is whether new connections use the direct receive path: on when
the internals are known, unless the environment says ``WSLOAD_DIRECT_RECEIVE=0`` (to rule the
path out when chasing a problem, and to run the test suite both ways).
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence

from websockets import http11
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig, ProtocolError, TooManyFragments
from websockets.extensions import ClientExtensionFactory
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol, Side, State
from websockets.streams import StreamReader
from websockets.typing import LoggerLike, Origin, Subprotocol
from websockets.uri import WebSocketURI, parse_uri
from websockets.utils import accept_key
from websockets.version import version as WEBSOCKETS_VERSION

from runner.client.frames import encode_control_frame, handshake_key

__all__ = [
    "DIRECT_RECEIVE",
    "ENV_DIRECT_RECEIVE",
    "INTERNALS_KNOWN",
    "KNOWN_VERSIONS",
    "MAX_FRAGMENTS",
    "STATUS",
    "WEBSOCKETS_VERSION",
    "WsClientProtocol",
    "direct_limit",
    "direct_receive_ready",
    "direct_receive_wanted",
    "holds_http_answer",
    "new_client_protocol",
    "parser_failure",
    "plain_frames",
    "run_frame_loop_alone",
    "send_upgrade_request",
    "take_close_frame",
    "version_known",
]

#: The releases (major, minor) whose internals this module was written for and tested with.
KNOWN_VERSIONS = ((17, 0), (17, 1), (17, 2), (17, 3), (17, 4))
#: The environment variable that turns the direct receive path off when set to ``0``.
ENV_DIRECT_RECEIVE = "WSLOAD_DIRECT_RECEIVE"
#: Frames one message may come in (the first and its continuations); beyond, the connection
#: fails with 1009. Bounds the time a peer can keep us busy with empty continuation frames
#: (they add nothing to the message's size); websockets' own asyncio API allows 4,096.
MAX_FRAGMENTS = 65536

_NO_LIMIT = 1 << 63
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_CLOSE = Opcode.CLOSE
_OPEN = State.OPEN
_CTRL_OPCODES = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))
_OPCODES = {opcode.value: opcode for opcode in Opcode}


def version_known(version: str) -> bool:
    """Whether ``version`` (websockets' ``version``: ``17.4``, ``17.4.1``, ``18.0.dev1+g...``) is a
    release of one of ``KNOWN_VERSIONS``; development versions are not."""
    found = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", version)
    return found is not None and (int(found[1]), int(found[2])) in KNOWN_VERSIONS


def direct_receive_wanted(environ: Mapping[str, str]) -> bool:
    """False when ``WSLOAD_DIRECT_RECEIVE`` is ``0`` (or ``false``/``no``/``off``), else True."""
    value = environ.get(ENV_DIRECT_RECEIVE, "").strip().lower()
    return value not in ("0", "false", "no", "off")


# --- our frame loop ---------------------------------------------------------------------------


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
    """websockets' frame loop, changed where websockets 17 does otherwise: a 64-bit length with
    the top bit set is a protocol error (1002, RFC 6455 5.2), not "too big"; a close frame
    between the fragments of a message ends the connection normally (control frames may come
    between fragments, 5.4); with permessage-deflate ``maxMessageSize`` limits the message after
    decompression, not the compressed frame (which may be slightly larger than the message it
    carries); and a message may have at most ``MAX_FRAGMENTS`` fragments (1009 beyond), so
    endless empty continuation frames end.

    A class of its own so that ``ClientProtocol.parse``'s ``super().parse()`` (after the
    handshake) runs it: ``WsClientProtocol``'s method order is ClientProtocol, _FrameLoop,
    Protocol."""

    def parse(self) -> Generator[None]:
        """``Protocol.parse`` with ``Frame.parse`` inlined; never raises (sets ``parser_exc``).
        One function because it is a generator that websockets' ``receive_data`` steps, and the
        direct receive path recognises where it waits by its code object."""
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
                opcode = _OPCODES.get(head1 & 0x0F)  # Opcode(n) makes an enum call: 0.35 us
                if opcode is None:
                    raise ProtocolError("invalid opcode") from ValueError(
                        f"{head1 & 0x0F} is not a valid Opcode"
                    )
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


#: The upgrade request's headers as websockets' ``connect`` made them, per URI, origin and
#: subprotocols (connections without extensions), at most ``_REQUEST_CACHE`` of them.
_REQUEST_HEADERS: dict[tuple[object, ...], tuple[tuple[str, str], ...]] = {}
_REQUEST_CACHE = 1024
_KEY_HEADER = "Sec-WebSocket-Key"
#: The whole upgrade request as websockets wrote it, cut around the connection's key, per URI,
#: origin, subprotocols, User-Agent and the options' headers: at most ``_REQUEST_CACHE``.
_REQUESTS: dict[tuple[object, ...], tuple[bytes, bytes]] = {}


class _NotStarted:
    """The parser of a ``WsClientProtocol`` that has received nothing yet."""

    __slots__ = ()


_ANSWER_PARSER_NOT_STARTED = _NotStarted()

#: The reader of every connection whose parser has not started: empty, and never fed, since
#: ``receive_data`` and ``receive_eof`` start the parser and ``fail`` starts ``discard``, each
#: giving the connection a reader of its own first (``_own_reader``), and websockets starts its
#: generators nowhere else. A reader of its own per held connection was 146 bytes (tracemalloc,
#: 1,000 held) that the direct receive path never uses.
_NO_READER = StreamReader()
#: Likewise its events: only the parser adds to them (56 bytes per held connection).
_NO_EVENTS: tuple[()] = ()


class WsClientProtocol(ClientProtocol, _FrameLoop):
    """websockets' ``ClientProtocol`` (handshake, control frames, closing) with our frame loop."""

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        origin: Origin | None = None,
        extensions: Sequence[ClientExtensionFactory] | None = None,
        subprotocols: Sequence[Subprotocol] | None = None,
        state: State = State.CONNECTING,
        max_size: int | tuple[int | None, int | None] | None = 2**20,
        logger: LoggerLike | None = None,
    ) -> None:
        """websockets' ``ClientProtocol.__init__`` with ``Protocol.__init__`` (the same in 17.0-17.4,
        compared; the check at import compares the attributes they set), except two things: the
        connection's ``id``, a UUID for logs that websockets' Sans-I/O core never reads, is made
        when first read, and the logger is looked up once. ``uuid4`` was 3.6% of an open and
        close (py-spy, S2 of the independent benchmark), ~1.7 us."""
        if logger is None:
            logger = _CLIENT_LOGGER
        self._id: uuid.UUID | None = None
        self.logger = logger
        self.debug = logger.isEnabledFor(logging.DEBUG)
        self.side = Side.CLIENT
        self.state = state
        if isinstance(max_size, int) or max_size is None:
            self.max_message_size, self.max_fragment_size = max_size, None
        else:
            self.max_message_size, self.max_fragment_size = max_size
        self.current_size = None
        self.expect_continuation_frame = False
        self.extensions = _NONE_NEGOTIATED  # type: ignore[assignment]  # (see there)
        self.subprotocol = None
        self.close_rcvd = None
        self.close_sent = None
        self.close_rcvd_then_sent = None
        self.handshake_exc = None
        self.eof_sent = False
        self.reader = _NO_READER
        self.events = _NO_EVENTS  # type: ignore[assignment]  # (see there)
        self.writes = []
        # websockets' answer parser starts with the first bytes that need it (``receive_data``):
        # the plain 101 answer is taken without it (``accept_answer``), and starting its three
        # generators in every open was ~2.7% of an open and close (py-spy, S2).
        self.parser = _ANSWER_PARSER_NOT_STARTED  # type: ignore[assignment]
        self.parser_exc = None
        self.uri = uri
        self.origin = origin
        self.available_extensions = extensions
        self.available_subprotocols = subprotocols
        self.key = handshake_key()  # websockets' ``generate_key``, from a pool of random bytes

    def receive_data(self, data: bytes | bytearray) -> None:
        """websockets' ``receive_data``, starting its parser first if it has not started.

        Past the handshake the loop is started only when websockets must parse a frame (a
        control frame, a fragment, anything the direct path leaves to it): until then an idle
        connection holds no generator. The loop suspended between frames, with the generator
        it waits in, was ~550 bytes of every held connection (tracemalloc, 3,000 held)."""
        parser = self.parser
        if parser is None or parser is _ANSWER_PARSER_NOT_STARTED:
            self._start_parser()
        super().receive_data(data)

    def receive_eof(self) -> None:
        """websockets' ``receive_eof``, starting its parser first if it has not started."""
        if self.parser is None or self.parser is _ANSWER_PARSER_NOT_STARTED:
            self._start_parser()
        super().receive_eof()

    def fail(self, code: int, reason: str = "") -> None:
        """websockets' ``fail``, which starts its ``discard`` generator on the reader: with the
        connection's own reader (the direct receive path fails a connection that has none yet)."""
        self._own_reader()
        super().fail(code, reason)

    def _own_reader(self) -> None:
        """Give the connection a reader and events of its own, before a generator of websockets
        is started on them (``_NO_READER``): one that waits in the shared reader would never
        see this connection's bytes, and feeding that one would feed every connection."""
        if self.reader is _NO_READER:
            self.reader = StreamReader()
            self.events = []

    def _start_parser(self) -> None:
        """websockets' whole parser (the answer, then the frames) before the answer came, the
        frame loop alone after it."""
        self._own_reader()
        if self.parser is None:
            self.parser = _FrameLoop.parse(self)
        else:
            self.parser = self.parse()
        next(self.parser)

    def send_frame(self, frame: Frame) -> None:
        """websockets' ``send_frame``, except that a control frame (close, ping, pong), with
        nothing negotiated and no debug logging, is checked by websockets (``Frame.check``) and
        encoded by ``frames.encode_control_frame``: ``Frame.serialize`` was 3.9 of the 5.4 us
        of a ``send_close`` (measured), once in every open and close."""
        if frame.opcode in _CTRL_OPCODES and not self.extensions and not self.debug:
            frame.check()
            self.writes.append(encode_control_frame(frame.opcode, frame.data))
        else:
            super().send_frame(frame)

    @property  # type: ignore[override]
    def id(self) -> uuid.UUID:
        """Unique identifier of the connection (websockets' ``Protocol.id``), made when first read."""
        ident = self._id
        if ident is None:
            ident = self._id = uuid.uuid4()
        return ident

    @id.setter
    def id(self, value: uuid.UUID) -> None:
        self._id = value

    def connect(self) -> Request:
        """websockets' ``connect``, with the headers that do not change from one open to the
        next made once per URI: the ``Host`` header parses the host as an IP literal each time,
        about 4 us of every open of a load run. The same headers in the same order, this
        connection's own key."""
        if self.available_extensions is not None:
            return super().connect()
        uri = self.uri
        key = (
            uri.secure, uri.host, uri.port, uri.resource_name, uri.user_info,
            self.origin, tuple(self.available_subprotocols or ()),
        )  # fmt: skip
        pairs = _REQUEST_HEADERS.get(key)
        if pairs is None:
            request = super().connect()
            if len(_REQUEST_HEADERS) < _REQUEST_CACHE:
                _REQUEST_HEADERS[key] = tuple(request.headers.raw_items())
            return request
        headers = Headers()
        for name, value in pairs:
            headers[name] = self.key if name == _KEY_HEADER else value
        return Request(uri.resource_name, headers)


_FRAME_LOOP = _FrameLoop.parse.__code__  # our loop: one frame per turn
#: The logger websockets gives a client protocol (``logging.getLogger`` returns this one object).
_CLIENT_LOGGER = logging.getLogger("websockets.client")
_AT_EOF = StreamReader.at_eof.__code__  # where that loop waits between frames


# --- reading the parser's state ---------------------------------------------------------------


def _waits_between_frames(ws: ClientProtocol) -> bool:
    """Whether websockets' parser is suspended at the top of our frame loop with nothing
    buffered, so the next byte it would be given starts a frame.

    Read from the suspended generators (``gi_yieldfrom``): the innermost one is
    ``StreamReader.at_eof`` (which only waits on an empty buffer) called from our frame loop.
    After a header or part of a payload it is ``read_exact``; after a close or a failure it is
    ``discard``. Anything unrecognised (a protocol object that is not a ``WsClientProtocol``)
    answers False, which only keeps the direct path off."""
    gen = getattr(ws, "parser", None)
    if gen is None:  # the frame loop not started yet (``WsClientProtocol.receive_data``)
        return type(ws) is WsClientProtocol and not ws.reader.buffer
    outer = None
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


def direct_receive_ready(ws: ClientProtocol) -> bool:
    """Whether the direct receive path may take the next bytes: open, no extension, no debug
    logging (websockets logs each frame), no fragmented message in progress, no separate
    fragment size limit (websockets applies it frame by frame), no parser failure, and the
    parser waiting at a frame boundary. The direct path's frames are then ones websockets' own
    state does not depend on."""
    return (
        ws.state is _OPEN
        and not getattr(ws, "extensions", True)
        and not getattr(ws, "debug", True)
        and getattr(ws, "current_size", 0) is None
        and getattr(ws, "max_fragment_size", 0) is None
        and getattr(ws, "parser_exc", 0) is None
        and _waits_between_frames(ws)
    )


def take_close_frame(ws: ClientProtocol, data: bytes) -> int | None:
    """After our close frame (CLOSING), take the peer's close frame from the start of ``data``
    as websockets' frame loop would: its ``recv_frame`` runs on it (the close recorded, the
    parser replaced by ``discard``, the frame queued as an event). The offset of the first byte
    after it; None, with nothing changed, for anything else (another frame first, a close frame
    cut in two, masked, above the message size limit or with a bad code or reason, extensions,
    debug logging, a parser not between frames): websockets' parser then takes the bytes and
    says what is wrong.
    Starting the frame loop and parsing the frame through its generators was about a tenth of an
    open and close (cProfile, S2 of the independent benchmark)."""
    if (
        type(ws) is not WsClientProtocol
        or ws.state is not State.CLOSING
        or ws.debug
        or ws.extensions
        or ws.current_size is not None
        or ws.parser_exc is not None
        or ws.max_fragment_size is not None
        or len(data) < 2
        or data[0] != 0x88  # FIN, no reserved bit, opcode 8
        or data[1] > 125  # a control frame's length; a server's frames are not masked
        or len(data) < 2 + data[1]
        or (ws.max_message_size is not None and data[1] > ws.max_message_size)  # the frame loop's limit
        or not _waits_between_frames(ws)
    ):
        return None
    end = 2 + data[1]
    ws._own_reader()
    try:
        ws.recv_frame(Frame(_CLOSE, bytes(data[2:end])))
    except (ProtocolError, UnicodeDecodeError):  # (raised before it changes anything)
        return None
    return end


def direct_limit(ws: ClientProtocol) -> int:
    """The longest frame the direct path may take: websockets' message size limit
    (``max_message_size``), any length when it is None; -1 (no frame at all: all go to
    websockets) when the limit cannot be read as one number."""
    if not hasattr(ws, "max_message_size"):
        return -1
    limit = ws.max_message_size
    if limit is None:
        return _NO_LIMIT
    return limit if type(limit) is int else -1


def run_frame_loop_alone(ws: ClientProtocol) -> None:
    """Past the handshake, between frames (``direct_receive_ready``): run the frame loop on its
    own. The generator it ran in (``ClientProtocol.parse``) holds the parsed HTTP answer, about
    1.3 KiB of headers, for as long as the connection lives (row 2 of the benchmarks)."""
    if type(ws) is WsClientProtocol and holds_http_answer(ws) and _waits_between_frames(ws):
        ws.parser = None  # type: ignore[assignment]  # the frame loop starts with the first frame


#: The extensions of a plain answer: one empty tuple for every connection, not an empty list
#: each (56 bytes per held connection); websockets only iterates over them.
_NONE_NEGOTIATED: tuple[()] = ()

#: websockets' own limits and patterns for an HTTP answer (``websockets.http11``).
_TOKEN = re.compile(rb"[-!#$%&\'*+.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
_STATUS_101 = b"HTTP/1.1 101 "
_MAX_HEADERS = http11.MAX_NUM_HEADERS
_MAX_LINE = http11.MAX_LINE_LENGTH
#: Answer headers that negotiate (``process_extensions``, ``process_subprotocol``): websockets
#: checks an answer that has one.
_NEGOTIATED = frozenset((b"sec-websocket-extensions", b"sec-websocket-protocol"))


def accept_answer(ws: ClientProtocol, data: bytes) -> int | None:
    """Take a whole ``101`` answer from the start of ``data`` (the first bytes the connection
    received) without websockets' generator parser: the offset of the first byte after it, the
    protocol now open with its frame loop running alone, as ``ClientProtocol.parse`` and
    ``run_frame_loop_alone`` would leave it. None, with nothing changed, for anything else (an
    answer cut in two, another status, a line websockets would refuse, extensions or a
    subprotocol asked for, debug logging, a check of ``process_response`` that fails): then
    websockets parses the answer and says what is wrong. Lines are split and checked with
    websockets' own patterns and limits, and the headers checked by its own
    ``process_response``, except the plain answer (``Upgrade: websocket``, ``Connection:
    upgrade``, the right ``Sec-WebSocket-Accept``, each once, nothing negotiated), which its
    checks accept and which is checked here directly; so an answer is accepted here only
    where websockets accepts it.
    Parsing the answer line by line through generators was about a sixth of an open and close
    (S2 in the independent benchmark)."""
    if (
        type(ws) is not WsClientProtocol
        or ws.state is not State.CONNECTING
        or ws.reader.buffer
        or ws.debug
        or ws.available_extensions is not None
        or ws.available_subprotocols is not None
        or not data.startswith(_STATUS_101)
    ):
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    reason = lines[0][len(_STATUS_101) :]
    if len(lines) > _MAX_HEADERS + 1 or len(lines[0]) + 2 > _MAX_LINE or not _VALUE.fullmatch(reason):
        return None
    pairs: list[tuple[bytes, bytes]] = []
    upgrade: list[bytes] = []  # the values of the headers the plain upgrade needs, by name
    connection: list[bytes] = []
    accept: list[bytes] = []
    plain = True  # no header that needs websockets' own check (extensions, subprotocol)
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or len(line) + 2 > _MAX_LINE or not _TOKEN.fullmatch(name):
            return None
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            return None
        pairs.append((name, value))
        lower = name.lower()
        if lower == b"upgrade":
            upgrade.append(value)
        elif lower == b"connection":
            connection.append(value)
        elif lower == b"sec-websocket-accept":
            accept.append(value)
        elif lower in _NEGOTIATED:
            plain = False
    if (
        plain
        and len(upgrade) == len(connection) == len(accept) == 1
        and upgrade[0].lower() == b"websocket"
        and connection[0].lower() == b"upgrade"
        and accept[0] == accept_key(ws.key).encode()  # (bytes: the header's value is not decoded)
    ):
        # The plain answer, checked as ``process_response`` checks it (each header once, so its
        # lists are these values): a subset of what that accepts, with nothing negotiated.
        # Building websockets' ``Headers`` and running its header parsers on it was 5% of an
        # open and close (py-spy, S2 of the independent benchmark).
        ws.extensions = _NONE_NEGOTIATED  # type: ignore[assignment]  # (websockets takes any Sequence)
        ws.subprotocol = None
    else:
        headers = Headers()
        for name, value in pairs:
            headers.set_insecure(name.decode("ascii"), value.decode("iso-8859-1"))
        try:
            ws.process_response(http11.Response(101, reason.decode("iso-8859-1"), headers))
        except Exception:  # websockets' parser finds the same and says so
            return None
    ws.state = State.OPEN
    ws.parser = None  # type: ignore[assignment]  # the frame loop starts with the first frame
    ws.key = ""  # only the answer's check reads it: 73 bytes less per held connection
    return end + 4


def holds_http_answer(ws: ClientProtocol) -> bool:
    """Whether websockets' parser still runs inside the generator that parsed the 101 answer."""
    parser = getattr(ws, "parser", None)
    if parser is None:  # past the answer, the frame loop not started yet
        return type(ws) is not WsClientProtocol
    return getattr(parser, "gi_code", None) is not _FRAME_LOOP


def plain_frames(ws: ClientProtocol) -> bool:
    """Whether data frames may be encoded without websockets: no extension negotiated (the
    handshake is over) and no debug logging (websockets logs each frame it sends)."""
    return not getattr(ws, "extensions", True) and not getattr(ws, "debug", True)


def parser_failure(ws: ClientProtocol) -> BaseException | None:
    """The exception that stopped websockets' parser (a protocol error, a too big message, the
    end of the stream in the middle of a frame), or None."""
    failure = getattr(ws, "parser_exc", None)
    return failure if isinstance(failure, BaseException) else None


def new_client_protocol(
    uri: WebSocketURI,
    *,
    origin: str | None,
    compression: bool,
    subprotocols: Sequence[str],
    max_size: int | None,
) -> ClientProtocol:
    """The protocol core of a new connection: ours when the internals are known, websockets'
    own ``ClientProtocol`` otherwise."""
    cls = WsClientProtocol if INTERNALS_KNOWN else ClientProtocol
    extensions: list[ClientExtensionFactory] | None = None
    if compression:
        extensions = [ClientPerMessageDeflateFactory()]
    return cls(
        uri,
        origin=Origin(origin) if origin is not None else None,
        extensions=extensions,
        subprotocols=[Subprotocol(s) for s in subprotocols] or None,
        max_size=max_size,
    )


def send_upgrade_request(ws: ClientProtocol, headers: Iterable[tuple[str, str]], user_agent: str) -> None:
    """Queue the upgrade request on ``ws``: websockets' ``connect`` request with ``User-Agent``
    and ``headers`` (each replacing every default of its name, case-insensitively), written by
    ``send_request``. Raises what those raise for a request that cannot be sent.

    A connection of a ``WsClientProtocol`` without extensions or debug logging sends the bytes
    the first such open to the same URI with the same origin, subprotocols and headers sent,
    with its own key put where that one's was: building websockets' ``Headers`` and serialising
    them cost ~5% of the CPU of an open and close in the S2 benchmark (py-spy). Nothing else of
    the protocol's state differs (``send_request`` only appends the bytes to ``writes``), and
    the key is checked to appear exactly once in the bytes it is cut from (a header of the
    options named ``Sec-WebSocket-Key`` replaces it: then nothing is kept)."""
    headers = tuple(headers)
    cache_key: tuple[object, ...] | None = None
    if type(ws) is WsClientProtocol and ws.available_extensions is None and not ws.debug:
        uri = ws.uri
        cache_key = (
            uri.secure, uri.host, uri.port, uri.resource_name, uri.user_info, ws.origin,
            tuple(ws.available_subprotocols or ()), user_agent, headers,
        )  # fmt: skip
        parts = _REQUESTS.get(cache_key)
        if parts is not None:
            ws.writes.append(parts[0] + ws.key.encode() + parts[1])
            return
    request = ws.connect()
    request_headers = request.headers
    request_headers["User-Agent"] = user_agent
    for name, value in headers:
        if name in request_headers:
            del request_headers[name]
        request_headers[name] = value
    ws.send_request(request)
    if cache_key is not None and len(_REQUESTS) < _REQUEST_CACHE:
        sent, key = ws.writes[-1], ws.key.encode()
        if sent.count(key) == 1:
            head, _, tail = sent.partition(key)
            _REQUESTS[cache_key] = (head, tail)


# --- the check at import ----------------------------------------------------------------------


def _self_test() -> str | None:
    """Drive a ``WsClientProtocol`` through a handshake and a frame cut in two, checking what the
    functions above read off it at each point; None when all is as expected, else what was not."""
    try:
        uri = parse_uri("ws://127.0.0.1/")
        if set(vars(WsClientProtocol(uri))) - {"_id"} != set(vars(ClientProtocol(uri))) - {"id"}:
            return "WsClientProtocol.__init__ does not set what websockets' sets"
        # A logger of its own, outside the hierarchy: debug logging elsewhere must not count.
        quiet = logging.Logger("wsload.compat.self-test", logging.WARNING)
        ws = WsClientProtocol(parse_uri("ws://127.0.0.1/"), logger=quiet)
        ws.send_request(ws.connect())
        ws.data_to_send()
        if direct_receive_ready(ws):
            return "the parser looked ready before the handshake"
        ws.receive_data(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(ws.key).encode() + b"\r\n\r\n"
        )
        ws.events_received()
        if ws.state is not _OPEN or not direct_receive_ready(ws) or not holds_http_answer(ws):
            return "the parser did not wait for a frame after the handshake"
        run_frame_loop_alone(ws)
        if holds_http_answer(ws) or not direct_receive_ready(ws):
            return "the frame loop did not run on its own"
        ws.receive_data(b"\x81\x02")
        if direct_receive_ready(ws):
            return "the parser looked ready in the middle of a frame"
        ws.receive_data(b"ok")
        events = ws.events_received()
        if len(events) != 1 or not isinstance(events[0], Frame) or events[0].data != b"ok":
            return "the frame loop did not parse a frame"
        if not direct_receive_ready(ws) or direct_limit(ws) != 1 << 20 or not plain_frames(ws):
            return "the parser's state after a frame was not as expected"
    except Exception as exc:  # any change in the internals: the tricks stay off
        return f"{type(exc).__name__}: {exc}"
    return None


def _check() -> tuple[bool, str]:
    if not version_known(WEBSOCKETS_VERSION):
        first, last = KNOWN_VERSIONS[0], KNOWN_VERSIONS[-1]
        known = f"{first[0]}.{first[1]}-{last[0]}.{last[1]}"
        return False, f"websockets {WEBSOCKETS_VERSION} is not a release it was written for ({known})"
    problem = _self_test()
    if problem is not None:
        return False, f"websockets {WEBSOCKETS_VERSION}'s internals are not as expected ({problem})"
    return True, f"websockets {WEBSOCKETS_VERSION}"


#: Whether the frame loop, the direct receive path and the idle trimming may be used.
INTERNALS_KNOWN, _WHY = _check()
#: Whether new connections use the direct receive path (``WsConnection(direct_receive=...)``
#: overrides it per connection, though never to on when the internals are unknown).
DIRECT_RECEIVE = INTERNALS_KNOWN and direct_receive_wanted(os.environ)
#: One line saying whether the direct receive path is on, and why not.
STATUS = (
    f"direct receive path on ({_WHY})"
    if DIRECT_RECEIVE
    else f"direct receive path off ({_WHY if not INTERNALS_KNOWN else ENV_DIRECT_RECEIVE + '=0'})"
)
