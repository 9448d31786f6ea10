"""``WebSocketClient``: webSocketOpen/Write/Read/Close with WinCC OA's return codes and a
getLastError()-like last error: a socket table over ``WsConnection`` objects, which own their
state (``runner.client.connection``); opening runs in timed phases (``runner.client.connect``).
"""

from __future__ import annotations

import asyncio
from time import monotonic_ns

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.uri import WebSocketURI, parse_uri

from runner.client.codes import (
    RC_CLOSED,
    RC_ERROR,
    RC_OK,
    RC_TIMEOUT,
    ConnectTiming,
    ErrorKind,
    LastError,
    PingResult,
    ReadResult,
    TlsStatus,
)
from runner.client.connect import USER_AGENT, Deadline, OpenFailed, Opening, open_connection
from runner.client.connection import (
    MAX_QUEUED_BYTES,
    MAX_QUEUED_MESSAGES,
    SEND_BUFFER_LIMIT,
    SendRefused,
    WriteBatcher,
    WsConnection,
)
from runner.client.options import ConnectOptions
from runner.client.request import check_request, url_problem
from runner.client.timers import TimerHeap

__all__ = ["SEND_BUFFER_LIMIT", "URI_CACHE_SIZE", "USER_AGENT", "WebSocketClient", "parse_url"]

#: Distinct URLs whose parsed form a client keeps (and shares between its connections: about
#: 220 bytes per idle connection); URLs beyond these are parsed per open.
URI_CACHE_SIZE = 256


def parse_url(url: str) -> WebSocketURI | LastError:
    """Check a URL as webSocketOpen does: INVALID_URL for bad syntax (and for a space or a
    control character, which cannot go on the request line), UNSUPPORTED_SCHEME for anything
    but ws/wss. Pure."""
    if not isinstance(url, str) or "://" not in url:
        return LastError.of(ErrorKind.INVALID_URL, f"{url!r} is not an absolute URL")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("ws", "wss"):
        return LastError.of(ErrorKind.UNSUPPORTED_SCHEME, f"{scheme!r} in {url!r} (use ws or wss)")
    problem = url_problem(url)
    if problem is not None:
        return LastError.of(ErrorKind.INVALID_URL, problem)
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        return LastError.of(ErrorKind.INVALID_URL, f"{url!r}: {exc.msg}")
    except ValueError as exc:  # bad port and the like, from urllib
        return LastError.of(ErrorKind.INVALID_URL, f"{url!r}: {exc}")
    return uri


class WebSocketClient:
    """A socket table with WinCC OA's functions. Socket numbers come from a counter and are
    never reused within one client. Every function delegates to the socket's connection and
    turns its outcome into a return code and, on failure, the last error."""

    def __init__(
        self,
        *,
        send_buffer_limit: int = SEND_BUFFER_LIMIT,
        max_queued_messages: int = MAX_QUEUED_MESSAGES,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        direct_receive: bool | None = None,
        uri_cache_size: int = URI_CACHE_SIZE,
    ) -> None:
        """The limits bound memory per socket against peers that do not read (``send_buffer_limit``,
        checked once the transport is above its high-water mark, 64 KiB by default) or send faster
        than we read (the receive queue; reading pauses above it). ``direct_receive`` turns the
        direct receive path on or off for this client's connections (default: on unless
        ``WSLOAD_DIRECT_RECEIVE=0``; see ``runner.client.compat``)."""
        self.send_buffer_limit = send_buffer_limit
        self.max_queued_messages = max_queued_messages
        self.max_queued_bytes = max_queued_bytes
        self.direct_receive = direct_receive
        self._sockets: dict[int, WsConnection] = {}
        #: Its connections above their send buffer's high-water mark (they add and remove
        #: themselves; read-only for everyone else): counted each second by the load engine
        #: without a walk over every socket, and empty in the per-message case, where a writer
        #: looks at it before asking ``write_paused`` (a call and a look-up less per write).
        self.paused: set[WsConnection] = set()
        self._timing: dict[int, ConnectTiming] = {}
        self._tls: dict[int, TlsStatus] = {}
        self._next = 0
        self._last: LastError | None = None
        # Parsed URLs, shared by the connections to them (websockets' protocol keeps its URI).
        self._uris: dict[str, WebSocketURI] = {}
        self._uri_cache_size = uri_cache_size
        self._batcher: WriteBatcher | None = None  # of the loop the sockets live in
        self._timers: TimerHeap | None = None  # opens' and closes' deadlines, on that loop too

    # --- open ---------------------------------------------------------------------------------

    async def open(self, url: str, options: ConnectOptions | None = None) -> int:
        """webSocketOpen: a socket number >= 0, -1 on error, -2 when ``options.timeout_s`` ran out."""
        options = options or ConnectOptions()
        opening = Opening(monotonic_ns())
        uri = self._uri(url)
        if isinstance(uri, LastError):
            return self._fail(uri)
        if options.timeout_s is not None and options.timeout_s <= 0:
            return self._fail(
                LastError.of(ErrorKind.ARGUMENT, f"timeout must be positive, got {options.timeout_s}")
            )
        refused = check_request(options)  # what cannot be sent is refused before connecting
        if refused is not None:
            return self._fail(refused)
        loop = asyncio.get_running_loop()
        try:
            async with Deadline(self._timers_of(loop), options.timeout_s):
                conn = await open_connection(loop, uri, options, opening, self._new_connection)
        except OpenFailed as failed:
            opening.release()
            return self._fail(failed.error)
        except TimeoutError:
            opening.release()
            waited = f"{options.timeout_s:g} s"
            return self._fail(
                LastError.of(
                    ErrorKind.TIMEOUT,
                    f"no connection to {uri.host}:{uri.port} within {waited} (during {opening.phase})",
                    rc=RC_TIMEOUT,
                )
            )
        except BaseException:
            opening.release()
            raise
        number = self._next
        self._next += 1
        self._sockets[number] = conn
        self._timing[number] = opening.timing(monotonic_ns())
        if opening.tls is not None:
            self._tls[number] = opening.tls
        return number

    def _uri(self, url: str) -> WebSocketURI | LastError:
        """``url`` parsed (from the cache when it was seen before), or why it cannot be opened."""
        uri = self._uris.get(url) if type(url) is str else None
        if uri is None:
            parsed = parse_url(url)
            if isinstance(parsed, LastError):
                return parsed
            uri = parsed
            if len(self._uris) < self._uri_cache_size:
                self._uris[url] = uri
        return uri

    def _new_connection(self, ws: ClientProtocol, loop: asyncio.AbstractEventLoop) -> WsConnection:
        batcher = self._batcher
        if batcher is None or batcher.loop is not loop:
            batcher = self._batcher = WriteBatcher(loop)
        return WsConnection(
            ws,
            loop,
            max_queued_messages=self.max_queued_messages,
            max_queued_bytes=self.max_queued_bytes,
            send_buffer_limit=self.send_buffer_limit,
            batcher=batcher,
            timers=self._timers_of(loop),
            direct_receive=self.direct_receive,
            paused_in=self.paused,
        )

    def _timers_of(self, loop: asyncio.AbstractEventLoop) -> TimerHeap:
        """The deadlines of this client's opens and closes on ``loop`` (one loop timer for all)."""
        timers = self._timers
        if timers is None or timers.loop is not loop:
            timers = self._timers = TimerHeap(loop)
        return timers

    # --- the other functions ------------------------------------------------------------------

    def write(self, socket: int, data: str | bytes) -> int:
        """webSocketWrite: bytes of payload written (text frame for str, binary for bytes), or -1."""
        conn = self._sockets.get(socket)
        if conn is None:
            return self._unknown(socket)
        sent = conn.send(data)
        if sent >= 0:
            return sent
        if sent == SendRefused.CLOSED:
            return self._fail(LastError.of(ErrorKind.CLOSED, f"socket {socket} is closed, cannot write"))
        if sent == SendRefused.NOT_DATA:
            return self._fail(LastError.of(ErrorKind.ARGUMENT, f"cannot write a {type(data).__name__}"))
        return self._fail(
            LastError.of(
                ErrorKind.NETWORK,
                f"send buffer full: {conn.write_buffer_size} bytes not yet sent on socket {socket} "
                "(the peer is not reading)",
            )
        )

    def write_paused(self, socket: int) -> bool:
        """Whether ``drain`` would wait: lets a caller skip creating its coroutine per write."""
        conn = self._sockets.get(socket)
        return conn is not None and conn.write_paused

    async def drain(self, socket: int, timeout_s: float | None = None) -> int:
        """Wait while the socket's send buffer is above its high-water mark: 0 when it went
        below (or the socket is gone: the next call says why), -2 when ``timeout_s`` passed
        first (the peer is not reading)."""
        conn = self._sockets.get(socket)
        if conn is None or not conn.write_paused:
            return RC_OK  # the common case: no timer, no await
        try:
            await conn.drain(_deadline(conn, timeout_s))
        except TimeoutError:
            return self._fail(
                LastError.of(
                    ErrorKind.TIMEOUT,
                    f"{conn.write_buffer_size} bytes still not sent on socket {socket} after "
                    f"{timeout_s:g} s (the peer is not reading)",
                    rc=RC_TIMEOUT,
                )
            )
        return RC_OK

    def read_now(self, socket: int) -> ReadResult | None:
        """``read`` without waiting: a queued message, the peer's close (or the error that ended
        the connection), -1 for an unknown socket; None when a message can still come (the
        connection's ``wait_with`` then says when to ask again: the engine's callback rounds,
        ``runner.engine.rounds``)."""
        conn = self._sockets.get(socket)
        if conn is None:
            return ReadResult(self._unknown(socket))
        result = conn.receive_nowait()
        if result is not None:
            return result
        if conn.closed:
            return self._peer_closed(socket, conn)
        return None

    def read_timed_out(self, socket: int, timeout_s: float) -> ReadResult:
        """The -2 of a read that waited ``timeout_s`` in vain (``WsConnection.wait_with``), with its
        last error, as ``read`` returns it."""
        return self._read_timeout(socket, timeout_s)

    async def read(self, socket: int, timeout_s: float | None = None) -> ReadResult:
        """webSocketRead: rc 0 with a message (str for text, bytes for binary), 1 when the peer
        closed (after every message that came before the close), -1 on error, -2 on time-out."""
        conn = self._sockets.get(socket)
        if conn is None:
            return ReadResult(self._unknown(socket))
        result = conn.receive_nowait()  # the hot path of a load run: no call that is not needed
        if result is not None:
            return result
        if conn.closed:
            return self._peer_closed(socket, conn)
        if timeout_s is not None and timeout_s <= 0:
            return self._read_timeout(socket, timeout_s)
        await conn.wait(None if timeout_s is None else conn.loop.time() + timeout_s)
        result = conn.receive_nowait()
        if result is not None:
            return result
        if conn.closed:
            return self._peer_closed(socket, conn)
        return self._read_timeout(socket, timeout_s)

    async def ping(self, socket: int, timeout_s: float | None = None) -> PingResult:
        """Send a ping and wait for its pong: rc 0 and the round-trip time, -1, -2."""
        conn = self._sockets.get(socket)
        if conn is None:
            return PingResult(self._unknown(socket))
        if not conn.is_open:
            return PingResult(
                self._fail(LastError.of(ErrorKind.CLOSED, f"socket {socket} is closed, cannot ping"))
            )
        try:
            rtt = await conn.ping(_deadline(conn, timeout_s))
        except TimeoutError:
            return PingResult(
                self._fail(
                    LastError.of(
                        ErrorKind.TIMEOUT, f"no pong on socket {socket} within {timeout_s:g} s", rc=RC_TIMEOUT
                    )
                )
            )
        if rtt is None:
            return PingResult(
                self._fail(LastError.of(ErrorKind.CLOSED, f"socket {socket} closed before the pong"))
            )
        return PingResult(RC_OK, rtt)

    async def close(self, socket: int, timeout_s: float | None = 5.0) -> int:
        """webSocketClose: 0, or -1 for an unknown socket. Sends a close frame, waits up to
        ``timeout_s`` for the server to end the TCP connection, then drops it anyway."""
        conn = self._sockets.pop(socket, None)
        if conn is None:
            return self._unknown(socket)
        self.paused.discard(conn)
        self._timing.pop(socket, None)
        self._tls.pop(socket, None)
        await conn.close(_deadline(conn, timeout_s))
        self.paused.discard(conn)  # paused again by its close frame, if the peer never read
        return RC_OK

    async def aclose(self) -> None:
        """Close every open socket (at the end of a run)."""
        conns = list(self._sockets.values())
        self._sockets.clear()
        self.paused.clear()
        self._timing.clear()
        self._tls.clear()
        await asyncio.gather(*(c.close(_deadline(c, 2.0)) for c in conns), return_exceptions=True)

    # --- inspection ---------------------------------------------------------------------------

    def last_error(self) -> LastError | None:
        """The last error of any function on this client, like getLastError()."""
        return self._last

    def timing(self, socket: int) -> ConnectTiming:
        """Where the open of ``socket`` spent its time, handed over once (the open step reads it
        right after the open): kept, it was ~200 bytes of every held connection."""
        return self._timing.pop(socket, None) or ConnectTiming()

    def tls_status(self, socket: int) -> TlsStatus | None:
        """How the certificate was treated (None for ws:// or an unknown socket)."""
        return self._tls.get(socket)

    def last_write_ns(self, socket: int) -> int:
        conn = self._sockets.get(socket)
        return conn.last_write_ns if conn is not None else 0

    def queued(self, socket: int) -> tuple[int, int]:
        """Unread messages held for ``socket``, and their bytes with those of the fragmented
        message still arriving (bounded by the queue limits, plus one message)."""
        conn = self._sockets.get(socket)
        return conn.queued if conn is not None else (0, 0)

    def send_buffered(self, socket: int) -> int:
        """Bytes written but not yet handed to the kernel (bounded by ``send_buffer_limit``
        plus one message): in the transport's buffer, and kept for the end of the loop turn."""
        conn = self._sockets.get(socket)
        return conn.send_buffered if conn is not None else 0

    def is_open(self, socket: int) -> bool:
        conn = self._sockets.get(socket)
        return conn is not None and conn.is_open

    def connection(self, socket: int) -> WsConnection | None:
        """The connection behind ``socket`` (for its transport, counters and state), or None."""
        return self._sockets.get(socket)

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    @property
    def send_blocked(self) -> int:
        """Sockets whose send buffer is above its high-water mark (``write_paused``)."""
        return len(self.paused)

    @property
    def cached_urls(self) -> frozenset[str]:
        """The URLs whose parsed form this client keeps (at most ``uri_cache_size``)."""
        return frozenset(self._uris)

    # --- errors -------------------------------------------------------------------------------

    def _fail(self, error: LastError) -> int:
        self._last = error
        return error.rc

    def _unknown(self, socket: int) -> int:
        return self._fail(LastError.of(ErrorKind.UNKNOWN_SOCKET, f"no open socket {socket}"))

    def _read_timeout(self, socket: int, timeout_s: float | None) -> ReadResult:
        self._fail(
            LastError.of(
                ErrorKind.TIMEOUT, f"no message on socket {socket} within {timeout_s:g} s", rc=RC_TIMEOUT
            )
        )
        return ReadResult(RC_TIMEOUT)

    def _peer_closed(self, socket: int, conn: WsConnection) -> ReadResult:
        failure = conn.parser_failure
        if conn.invalid_utf8 is not None:
            self._fail(LastError.of(ErrorKind.PROTOCOL, f"socket {socket}: {conn.invalid_utf8}"))
            return ReadResult(RC_ERROR)
        if failure is not None and not isinstance(failure, EOFError):
            self._fail(LastError.of(ErrorKind.PROTOCOL, f"socket {socket}: {_describe_failure(failure)}"))
            return ReadResult(RC_ERROR)
        rcvd = conn.ws.close_rcvd
        reason = ""
        if rcvd is not None:
            code: int | None = int(rcvd.code)
            reason = rcvd.reason
            if len(reason.encode()) >= MAX_CLOSE_REASON:  # perhaps cut by the peer: say so
                reason += CUT
            detail = f"peer closed socket {socket} with code {code}" + (f" ({reason})" if reason else "")
            if conn.dropped:  # allowed (RFC 6455 5.4); the partial message is dropped
                detail += f", in the middle of a fragmented message ({conn.dropped} bytes dropped)"
        else:
            code = None
            exc = conn.lost_exc
            why = (
                ((exc.strerror or str(exc)).lower() if isinstance(exc, OSError) else str(exc)) if exc else ""
            )
            detail = f"peer closed socket {socket} without a close frame" + (f" ({why})" if why else "")
            if isinstance(failure, EOFError) and str(failure) != "unexpected end of stream":
                detail += f", in the middle of a frame ({failure})"
        self._fail(LastError.of(ErrorKind.CLOSED, detail, rc=RC_CLOSED))
        return ReadResult(RC_CLOSED, None, 0, code, reason)


#: A close frame's reason fills at most 123 bytes (RFC 6455 5.5: 125 with the code). A reason
#: at the limit may have been cut by the peer, perhaps inside a secret it echoed: it is shown
#: ending in ``CUT``, the ellipsis after which reports mask any beginning of a secret
#: (``runner.scenario.secrets``).
MAX_CLOSE_REASON = 123
CUT = "\u2026"


def _deadline(conn: WsConnection, timeout_s: float | None) -> float | None:
    """``timeout_s`` from now as a deadline in the connection's loop time (None: no limit)."""
    return None if timeout_s is None else conn.loop.time() + timeout_s


def _describe_failure(exc: BaseException) -> str:
    """The parser's failure in words a tester understands."""
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 in the close frame's reason ({exc.reason} at byte {exc.start})"
    text = str(exc) or type(exc).__name__
    if text == "invalid opcode":
        return "invalid opcode (a reserved one: 3-7 and 11-15 are not defined in RFC 6455)"
    if text == "incorrect masking":
        return "incorrect masking (a server must not mask its frames)"
    if "status code" in text:  # websockets: "invalid status code 1005"
        return (
            f"{text} in a close frame "
            "(1005, 1006, 1015 and codes outside 1000-4999 are not allowed on the wire)"
        )
    return text
