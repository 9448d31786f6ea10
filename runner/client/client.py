"""``WebSocketClient``: webSocketOpen/Write/Read/Close with WinCC OA's return codes and a
getLastError()-like last error, over ``WsConnection`` (our protocol around websockets' core).

Opening is split in timed phases: TCP (with name resolution), TLS (probe included when
``ignoreSslErrors`` lists keywords), HTTP upgrade; one deadline covers all of them.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import re
import socket
import ssl
import sys
from time import monotonic_ns
from typing import Any

from websockets.exceptions import (
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    StatusLineTooLong,
)
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri
from websockets.version import version as websockets_version

from runner import __version__
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
    os_error,
)
from runner.client.options import ConnectOptions
from runner.client.protocol import (
    MAX_QUEUED_BYTES,
    MAX_QUEUED_MESSAGES,
    WriteBatcher,
    WsClientProtocol,
    WsConnection,
)
from runner.client.request import check_request, url_problem
from runner.client.tls import (
    TlsArgumentError,
    client_context,
    decide,
    leaf_errors,
    pinned_context,
    probe,
    ssl_error,
)
from runner.scenario.model import ALL_SSL_ERRORS

_OPEN = State.OPEN

#: Linux's IP_BIND_ADDRESS_NO_PORT (24; not exported by Python's socket module); None elsewhere.
_BIND_ADDRESS_NO_PORT: int | None = getattr(
    socket, "IP_BIND_ADDRESS_NO_PORT", 24 if sys.platform == "linux" else None
)

__all__ = ["SEND_BUFFER_LIMIT", "USER_AGENT", "WebSocketClient", "parse_url"]

#: A write is refused (-1) while this many bytes wait in the socket's send buffer: a peer that
#: does not read cannot make us hold more than this plus one message.
SEND_BUFFER_LIMIT = 8 << 20

USER_AGENT = f"wsload/{__version__} websockets/{websockets_version}"
#: Distinct URLs whose parsed form a client keeps (and shares between its connections: about
#: 220 bytes per idle connection); URLs beyond these are parsed per open.
URI_CACHE_SIZE = 256
_UNLIMITED_HANDSHAKE_S = 365 * 86400.0  # asyncio's own TLS handshake limit is 60 s; ours is the open's


_CHANGED_CERTIFICATE = LastError.of(
    ErrorKind.SSL,
    "CertificateRejected (the server presented another certificate than in the probe)",
    keyword="CertificateRejected",
)


class _OpenFailed(Exception):
    """Internal: an open ends with this last error (always caught in ``open``)."""

    def __init__(self, error: LastError) -> None:
        self.error = error


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
    never reused within one client."""

    def __init__(
        self,
        *,
        send_buffer_limit: int = SEND_BUFFER_LIMIT,
        max_queued_messages: int = MAX_QUEUED_MESSAGES,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        """The limits bound memory per socket against peers that do not read (``send_buffer_limit``,
        checked once the transport is above its high-water mark, 64 KiB by default) or send faster
        than we read (the receive queue; reading pauses above it)."""
        self.send_buffer_limit = send_buffer_limit
        self.max_queued_messages = max_queued_messages
        self.max_queued_bytes = max_queued_bytes
        self._sockets: dict[int, WsConnection] = {}
        self._timing: dict[int, ConnectTiming] = {}
        self._tls: dict[int, TlsStatus] = {}
        self._next = 0
        self._last: LastError | None = None
        # Parsed URLs, shared by the connections to them (websockets' protocol keeps its URI).
        self._uris: dict[str, WebSocketURI] = {}
        self._batcher: WriteBatcher | None = None  # of the loop the sockets live in

    # --- open ---------------------------------------------------------------------------------

    async def open(self, url: str, options: ConnectOptions | None = None) -> int:
        """webSocketOpen: a socket number >= 0, -1 on error, -2 when ``options.timeout_s`` ran out."""
        options = options or ConnectOptions()
        start = monotonic_ns()
        uri = self._uris.get(url) if type(url) is str else None
        if uri is None:
            parsed = parse_url(url)
            if isinstance(parsed, LastError):
                return self._fail(parsed)
            uri = parsed
            if len(self._uris) < URI_CACHE_SIZE:
                self._uris[url] = uri
        if options.timeout_s is not None and options.timeout_s <= 0:
            return self._fail(
                LastError.of(ErrorKind.ARGUMENT, f"timeout must be positive, got {options.timeout_s}")
            )
        refused = check_request(options)  # what cannot be sent is refused before connecting
        if refused is not None:
            return self._fail(refused)
        state = _OpenState(start)
        try:
            async with asyncio.timeout(options.timeout_s):
                conn = await self._connect(uri, options, state)
        except _OpenFailed as failed:
            state.close()
            return self._fail(failed.error)
        except TimeoutError:
            state.close()
            waited = f"{options.timeout_s:g} s"
            return self._fail(
                LastError.of(
                    ErrorKind.TIMEOUT,
                    f"no connection to {uri.host}:{uri.port} within {waited} (during {state.phase})",
                    rc=RC_TIMEOUT,
                )
            )
        except BaseException:
            state.close()
            raise
        number = self._next
        self._next += 1
        self._sockets[number] = conn
        end = monotonic_ns()
        self._timing[number] = ConnectTiming(state.tcp_ns, state.tls_ns, end - state.mark, end - start)
        if state.tls is not None:
            self._tls[number] = state.tls
        return number

    async def _connect(self, uri: WebSocketURI, options: ConnectOptions, state: _OpenState) -> WsConnection:
        loop = asyncio.get_running_loop()
        host, port = uri.host, uri.port
        # Argument errors first: nothing goes on the wire with unusable options.
        ctx: ssl.SSLContext | None = None
        ignore = options.ignore_ssl_errors
        if uri.secure:
            try:
                if ignore is None:
                    ctx = client_context(options, True)
                elif ignore is ALL_SSL_ERRORS:
                    ctx = client_context(options, False)
                    state.tls = TlsStatus(verified=False, all_ignored=True)
                else:
                    client_context(options, True)  # validates sslConfig / caCertificates now
            except TlsArgumentError as exc:
                raise _OpenFailed(LastError.of(ErrorKind.ARGUMENT, str(exc))) from None
        elif options.ssl_config is not None or options.ca_certificates:
            pass  # TLS options on ws:// are harmless, as in the manual; nothing to check
        state.phase = "TCP connect"
        sock = await self._tcp(loop, host, port, options, state)
        state.tcp_ns = monotonic_ns() - state.mark
        state.mark = monotonic_ns()
        pinned: bytes | None = None
        if uri.secure and ctx is None:  # a keyword list: probe first
            state.phase = "TLS handshake (probe)"
            state.sock = sock
            try:
                found = await probe(sock, host, options)
            except (ssl.SSLError, OSError) as exc:
                raise _OpenFailed(_tls_failure(exc, host, port)) from None
            finally:
                state.sock = None
                sock.close()
            verdict = decide(found.keywords, ignore)
            if not verdict.ok:
                keyword = verdict.refused
                assert keyword is not None
                raise _OpenFailed(
                    LastError.of(ErrorKind.SSL, f"{keyword} ({found.messages[keyword]})", keyword=keyword)
                )
            if verdict.ignored:
                pinned = found.leaf_der
                ctx = pinned_context(options, pinned)
                state.tls = TlsStatus(verified=False, ignored_errors=verdict.ignored)
            else:
                ctx = client_context(options, True)
                state.tls = TlsStatus(verified=True)
            state.phase = "TCP connect"
            sock = await self._tcp(loop, host, port, options, state)
        elif uri.secure and state.tls is None:
            state.tls = TlsStatus(verified=True)
        ws = WsClientProtocol(
            uri,
            origin=options.origin,  # type: ignore[arg-type]
            extensions=[ClientPerMessageDeflateFactory()] if options.compression else None,
            subprotocols=list(options.subprotocols) or None,  # type: ignore[arg-type]
            max_size=options.max_message_size,
        )
        batcher = self._batcher
        if batcher is None or batcher.loop is not loop:
            batcher = self._batcher = WriteBatcher(loop)
        conn = WsConnection(
            ws,
            loop,
            max_queued_messages=self.max_queued_messages,
            max_queued_bytes=self.max_queued_bytes,
            batcher=batcher,
        )
        state.phase = "TLS handshake" if ctx is not None else "HTTP upgrade"
        state.sock = sock
        try:
            await loop.create_connection(
                lambda: conn,
                sock=sock,
                ssl=ctx,
                server_hostname=host if ctx is not None else None,
                ssl_handshake_timeout=_UNLIMITED_HANDSHAKE_S if ctx is not None else None,
            )
        except ssl.SSLCertVerificationError as exc:
            if pinned is not None:  # fail closed: not the certificate the probe judged
                raise _OpenFailed(_CHANGED_CERTIFICATE) from None
            raise _OpenFailed(ssl_error(exc)) from None
        except (ssl.SSLError, OSError) as exc:
            raise _OpenFailed(_tls_failure(exc, host, port)) from None
        state.sock = None
        state.conn = conn
        transport = conn.transport
        assert transport is not None
        if ctx is not None:
            if pinned is not None:
                peer = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
                if peer != pinned:
                    raise _OpenFailed(_CHANGED_CERTIFICATE)
            elif ignore is ALL_SSL_ERRORS:  # verification off: say which errors were met anyway
                peer = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
                met = leaf_errors(peer, host) if peer else ()
                state.tls = TlsStatus(verified=False, ignored_errors=met, all_ignored=True)
            now = monotonic_ns()
            state.tls_ns = now - state.mark
            state.mark = now
        state.phase = "HTTP upgrade"
        if conn.closed or ws.handshake_exc is not None:
            # The server closed (or spoke first) before our request: websockets has already
            # half-closed the connection, and nothing may be written after that.
            raise _OpenFailed(_upgrade_failure(ws.handshake_exc, conn, host, port, uri.secure))
        try:
            request = ws.connect()
            headers = request.headers
            headers["User-Agent"] = USER_AGENT
            for name, value in options.headers:
                if name in headers:
                    del headers[name]
                headers[name] = value
            ws.send_request(request)
        except (InvalidHandshake, ValueError) as exc:  # InvalidHeader...; check_request lets none by
            bad = getattr(exc, "name", None)
            what = f"header {bad!r}" if bad else "the request"
            raise _OpenFailed(
                LastError.of(ErrorKind.ARGUMENT, f"{what} cannot be sent ({type(exc).__name__})")
            ) from None
        conn._flush()
        handshake = conn.handshake
        assert handshake is not None
        accepted = await handshake
        if not accepted or ws.handshake_exc is not None:
            raise _OpenFailed(_upgrade_failure(ws.handshake_exc, conn, host, port, uri.secure))
        conn.opened()
        return conn

    async def _tcp(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        options: ConnectOptions,
        state: _OpenState,
    ) -> socket.socket:
        try:
            literal = ipaddress.ip_address(host)
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            infos: list[tuple[Any, Any, int, str, Any]] | None = [
                (family, socket.SOCK_STREAM, 0, "", (host, port))
            ]
        except ValueError:
            infos = None
        try:
            if infos is None:  # a name: resolve (in the loop's executor)
                infos = list(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except socket.gaierror as exc:
            raise _OpenFailed(
                LastError.of(ErrorKind.NETWORK, f"cannot resolve {host!r} ({exc.strerror})")
            ) from None
        last: OSError | None = None
        assert infos is not None
        for family, kind, proto, _, address in infos:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                raise _OpenFailed(os_error(exc, host, port)) from None
            state.sock = sock
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if options.source_address:
                    # Pick the port at connect(), by the full 4-tuple, not at bind(): without this,
                    # bind() searches for a port free for *every* destination, which gets slow and
                    # then fails long before the ~28,000 ports per destination run out.
                    if _BIND_ADDRESS_NO_PORT is not None:
                        sock.setsockopt(socket.IPPROTO_IP, _BIND_ADDRESS_NO_PORT, 1)
                    try:
                        sock.bind((options.source_address, 0))
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.EADDRINUSE):
                            raise _OpenFailed(os_error(exc, host, port)) from None
                        raise _OpenFailed(
                            LastError.of(
                                ErrorKind.ARGUMENT,
                                f"sourceAddress {options.source_address!r} cannot be used "
                                f"({(exc.strerror or str(exc)).lower()})",
                            )
                        ) from None
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                state.sock = None
                last = exc
                continue
            except BaseException:
                sock.close()
                state.sock = None
                raise
            state.sock = None
            return sock
        assert last is not None
        raise _OpenFailed(os_error(last, host, port))

    # --- the other functions ------------------------------------------------------------------

    def write(self, socket: int, data: str | bytes) -> int:
        """webSocketWrite: bytes of payload written (text frame for str, binary for bytes), or -1."""
        conn = self._sockets.get(socket)
        if conn is None:
            return self._unknown(socket)
        if type(data) is str and not conn.write_paused and conn.ws.state is _OPEN and not conn.lost:
            return conn.send(data)  # the per-message case: the checks below would all pass
        if not conn.is_open:
            return self._fail(LastError.of(ErrorKind.CLOSED, f"socket {socket} is closed, cannot write"))
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            return self._fail(LastError.of(ErrorKind.ARGUMENT, f"cannot write a {type(data).__name__}"))
        transport = conn.transport
        # Above the high-water mark (pause_writing was called) only: no cost on the usual path.
        waiting = transport.get_write_buffer_size() if conn.write_paused and transport is not None else 0
        if waiting >= self.send_buffer_limit:
            return self._fail(
                LastError.of(
                    ErrorKind.NETWORK,
                    f"send buffer full: {waiting} bytes not yet sent on socket {socket} "
                    "(the peer is not reading)",
                )
            )
        return conn.send(data)

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
            async with asyncio.timeout(timeout_s):
                await conn.drain()
        except TimeoutError:
            transport = conn.transport
            waiting = transport.get_write_buffer_size() if transport is not None else 0
            return self._fail(
                LastError.of(
                    ErrorKind.TIMEOUT,
                    f"{waiting} bytes still not sent on socket {socket} after {timeout_s:g} s "
                    "(the peer is not reading)",
                    rc=RC_TIMEOUT,
                )
            )
        return RC_OK

    async def read(self, socket: int, timeout_s: float | None = None) -> ReadResult:
        """webSocketRead: rc 0 with a message (str for text, bytes for binary), 1 when the peer
        closed (after every message that came before the close), -1 on error, -2 on time-out."""
        conn = self._sockets.get(socket)
        if conn is None:
            return ReadResult(self._unknown(socket))
        messages = conn.messages
        if messages:  # the hot path of a load run: no call that is not needed
            data, received = messages.popleft()
            conn.queued_bytes -= len(data)
            if conn.reading_paused:
                conn.resume_if_drained()
            return ReadResult(RC_OK, data, received)
        if not conn.closed:
            if timeout_s is not None and timeout_s <= 0:
                return self._read_timeout(socket, timeout_s)
            loop = conn.loop
            waiter = conn.waiter
            if waiter is None or waiter.done():
                waiter = conn.waiter = loop.create_future()
            if timeout_s is not None:
                conn.arm(loop.time() + timeout_s)
            else:
                conn.deadline = None
            try:
                await waiter
            finally:
                conn.deadline = None
                if conn.waiter is waiter:
                    conn.waiter = None
            messages = conn.messages  # created by the first message
            if messages:
                data, received = messages.popleft()
                conn.queued_bytes -= len(data)
                if conn.reading_paused:
                    conn.resume_if_drained()
                return ReadResult(RC_OK, data, received)
            if not conn.closed:
                return self._read_timeout(socket, timeout_s)
        return self._peer_closed(socket, conn)

    async def ping(self, socket: int, timeout_s: float | None = None) -> PingResult:
        """Send a ping and wait for its pong: rc 0 and the round-trip time, -1, -2."""
        conn = self._sockets.get(socket)
        if conn is None:
            return PingResult(self._unknown(socket))
        if not conn.is_open:
            return PingResult(
                self._fail(LastError.of(ErrorKind.CLOSED, f"socket {socket} is closed, cannot ping"))
            )
        payload = os.urandom(4)
        fut: asyncio.Future[int] = conn.loop.create_future()
        pings = conn.pings
        if pings is None:
            pings = conn.pings = {}
        pings[payload] = (monotonic_ns(), fut)
        conn.ws.send_ping(payload)
        conn._flush()
        try:
            async with asyncio.timeout(timeout_s):
                rtt = await fut
        except TimeoutError:
            if conn.pings is not None:
                conn.pings.pop(payload, None)
            return PingResult(
                self._fail(
                    LastError.of(
                        ErrorKind.TIMEOUT, f"no pong on socket {socket} within {timeout_s:g} s", rc=RC_TIMEOUT
                    )
                )
            )
        if rtt < 0:
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
        self._timing.pop(socket, None)
        self._tls.pop(socket, None)
        await _shutdown(conn, timeout_s)
        return RC_OK

    async def aclose(self) -> None:
        """Close every open socket (at the end of a run)."""
        conns = list(self._sockets.values())
        self._sockets.clear()
        self._timing.clear()
        self._tls.clear()
        await asyncio.gather(*(_shutdown(c, 2.0) for c in conns), return_exceptions=True)

    # --- inspection ---------------------------------------------------------------------------

    def last_error(self) -> LastError | None:
        """The last error of any function on this client, like getLastError()."""
        return self._last

    def timing(self, socket: int) -> ConnectTiming:
        return self._timing.get(socket, ConnectTiming())

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
        if conn is None:
            return (0, 0)
        return (len(conn.messages) if conn.messages is not None else 0, conn.queued_bytes + conn.partial_in)

    def send_buffered(self, socket: int) -> int:
        """Bytes written but not yet handed to the kernel (bounded by ``send_buffer_limit``
        plus one message): in the transport's buffer, and kept for the end of the loop turn."""
        conn = self._sockets.get(socket)
        if conn is None or conn.transport is None:
            return 0
        return conn.transport.get_write_buffer_size() + conn.pending_out

    def is_open(self, socket: int) -> bool:
        conn = self._sockets.get(socket)
        return conn is not None and conn.is_open

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

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
        rcvd = conn.ws.close_rcvd
        failure = conn.ws.parser_exc
        if conn.invalid_utf8 is not None:
            self._fail(LastError.of(ErrorKind.PROTOCOL, f"socket {socket}: {conn.invalid_utf8}"))
            return ReadResult(RC_ERROR)
        if failure is not None and not isinstance(failure, EOFError):
            self._fail(LastError.of(ErrorKind.PROTOCOL, f"socket {socket}: {_describe_failure(failure)}"))
            return ReadResult(RC_ERROR)
        reason = ""
        if rcvd is not None:
            code: int | None = int(rcvd.code)
            reason = rcvd.reason
            detail = f"peer closed socket {socket} with code {code}" + (
                f" ({rcvd.reason})" if rcvd.reason else ""
            )
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


class _OpenState:
    """What an open has built so far, so a failure or time-out can release it."""

    __slots__ = ("conn", "mark", "phase", "sock", "tcp_ns", "tls", "tls_ns")

    def __init__(self, start: int) -> None:
        self.mark = start
        self.phase = "start"
        self.sock: socket.socket | None = None
        self.conn: WsConnection | None = None
        self.tcp_ns = 0
        self.tls_ns = 0
        self.tls: TlsStatus | None = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.abort()


def _tls_failure(exc: BaseException, host: str, port: int) -> LastError:
    if isinstance(exc, ssl.SSLError):
        return ssl_error(exc)
    if isinstance(exc, OSError):
        return os_error(exc, host, port)
    return LastError.of(ErrorKind.SSL, str(exc))


def _upgrade_failure(
    exc: BaseException | None, conn: WsConnection, host: str, port: int, secure: bool
) -> LastError:
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return LastError.of(
            ErrorKind.HANDSHAKE_REJECTED, f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        )
    lost = conn.lost_exc
    if isinstance(lost, ssl.SSLError):  # e.g. a TLS 1.3 server refusing our client certificate
        return ssl_error(lost)
    if exc is None or isinstance(exc.__cause__, EOFError):  # closed before a whole HTTP response
        if secure:
            return LastError.of(
                ErrorKind.SSL,
                f"{host}:{port} closed the connection after the TLS handshake "
                "without an HTTP response (a TLS 1.3 server does so when it refuses the client "
                "certificate)",
            )
        detail = f" ({lost})" if lost else ""
        return LastError.of(
            ErrorKind.NETWORK, f"connection to {host}:{port} closed during the HTTP upgrade{detail}"
        )
    return LastError.of(ErrorKind.PROTOCOL, f"invalid handshake response ({_handshake_detail(exc)})")


_TOO_LONG = re.compile(r"read \d+ bytes, expected no more than (\d+) bytes")


def _handshake_detail(exc: BaseException) -> str:
    """What was wrong with the answer to the upgrade: websockets' text with its cause (which
    says what it could not parse), a too long line said so, at most 300 characters."""
    cause = exc.__cause__
    detail = f"{exc}: {cause}" if cause is not None and str(cause) else str(exc)
    detail = _TOO_LONG.sub(r"a line longer than \1 bytes", detail)
    if isinstance(exc, StatusLineTooLong):
        detail = f"status line too long: {detail}"
    return detail if len(detail) <= 300 else detail[:297] + "..."


async def _shutdown(conn: WsConnection, timeout_s: float | None) -> None:
    transport = conn.transport
    if transport is None:
        return
    if conn.ws.state is State.OPEN and not conn.lost:
        conn.ws.send_close(1000)
        conn._flush()
    if not conn.lost:
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(conn.lost_future())
        except TimeoutError:
            pass
    transport.abort() if not conn.lost else transport.close()
