"""Opening a connection (webSocketOpen) in timed phases: the TLS arguments, TCP (with name
resolution), TLS (with the probe first when ``ignoreSslErrors`` lists keywords), the HTTP upgrade.
One deadline, the caller's ``Deadline``, covers all of them. Each phase records on the
``Opening`` what it built and where the time went, so that a failure or a time-out releases it
and the time-out's text names the phase it stopped in.

A phase that fails raises ``OpenFailed`` with the open's last error; ``WebSocketClient.open``
turns it into the return code. Nothing goes on the wire with unusable options.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import functools
import ipaddress
import os
import re
import socket
import ssl
import sys
from collections.abc import Callable
from time import monotonic_ns
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus, StatusLineTooLong
from websockets.uri import WebSocketURI
from websockets.version import version as websockets_version

from runner import __version__
from runner.client import compat
from runner.client.codes import ConnectTiming, ErrorKind, LastError, TlsStatus, os_error
from runner.client.connection import WsConnection
from runner.client.options import ALL_SSL_ERRORS, ConnectOptions
from runner.client.timers import TimerEntry, TimerHeap, settle
from runner.client.tls import (
    TlsArgumentError,
    client_context,
    decide,
    leaf_errors,
    pinned_context,
    probe,
    ssl_error,
)
from runner.errors import WsloadError

__all__ = ["USER_AGENT", "Deadline", "OpenFailed", "Opening", "open_connection"]

USER_AGENT = f"wsload/{__version__} websockets/{websockets_version}"

#: Linux's IP_BIND_ADDRESS_NO_PORT (24; not exported by Python's socket module); None elsewhere.
_BIND_ADDRESS_NO_PORT: int | None = getattr(
    socket, "IP_BIND_ADDRESS_NO_PORT", 24 if sys.platform == "linux" else None
)
#: Made non-blocking by socket() itself where the OS can (Linux): an ioctl less per open.
_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)
#: What a second connect() says while the TCP handshake still runs (``_connect``).
_CONNECTING = frozenset((errno.EALREADY, errno.EINPROGRESS, errno.EINTR))
_UNLIMITED_HANDSHAKE_S = 365 * 86400.0  # asyncio's own TLS handshake limit is 60 s; ours is the open's

_CHANGED_CERTIFICATE = LastError.of(
    ErrorKind.SSL,
    "CertificateRejected (the server presented another certificate than in the probe)",
    keyword="CertificateRejected",
)

#: Makes the connection for a new protocol core (the client's limits, write batcher, switches).
NewConnection = Callable[[ClientProtocol, asyncio.AbstractEventLoop], WsConnection]


class OpenFailed(WsloadError):
    """An open ends with this last error (raised by a phase, always caught by the client)."""

    def __init__(self, error: LastError) -> None:
        super().__init__(error.text)
        self.error = error


class Opening:
    """What an open has built so far and where its time went, so a failure or time-out can
    release it and say in which phase it stopped."""

    __slots__ = ("conn", "mark", "phase", "sock", "start", "tcp_ns", "tls", "tls_ns")

    def __init__(self, start: int) -> None:
        self.start = start
        self.mark = start  # when the current phase began
        self.phase = "start"
        self.sock: socket.socket | None = None
        self.conn: WsConnection | None = None
        self.tcp_ns = 0
        self.tls_ns = 0
        self.tls: TlsStatus | None = None

    def timing(self, end: int) -> ConnectTiming:
        """Name resolution and TCP, TLS (all handshakes), the upgrade, and the whole open."""
        return ConnectTiming(self.tcp_ns, self.tls_ns, end - self.mark, end - self.start)

    def release(self) -> None:
        """Close what the open built: it failed or ran out of time."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.conn is not None:
            self.conn.abort()


class Deadline:
    """``asyncio.timeout(delay)`` for the open, told its loop (``timers.loop``) and task, on a
    ``TimerHeap``: the standard one asks for
    the running loop three times, and each time is a ``getpid()`` system call (with the one
    ``open_connection`` made, 4.7% of the CPU of an open in the S2 benchmark). The same rules:
    at the deadline the task is cancelled, and the ``CancelledError`` that this caused leaves
    the block as ``TimeoutError``; a cancellation from elsewhere stays a cancellation."""

    __slots__ = ("_cancelling", "_delay", "_expired", "_handle", "_task", "_timers")

    def __init__(self, timers: TimerHeap, delay: float | None) -> None:
        task = asyncio.current_task(timers.loop)
        assert task is not None, "Deadline is used inside a task"
        self._timers = timers
        self._task = task
        self._delay = delay
        self._handle: TimerEntry | None = None
        self._expired = False
        self._cancelling = 0

    async def __aenter__(self) -> Deadline:
        self._cancelling = self._task.cancelling()
        if self._delay is not None:
            # On the client's ``TimerHeap``, not a loop timer each: a cancelled uvloop timer
            # waits for a full garbage collection (``runner.client.timers``).
            self._handle = self._timers.call_at(self._timers.loop.time() + self._delay, self._on_deadline)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        cancelled = exc_type is asyncio.CancelledError
        if self._expired and self._task.uncancel() <= self._cancelling and cancelled:
            raise TimeoutError from exc

    def _on_deadline(self) -> None:
        self._handle = None
        self._expired = True
        self._task.cancel()


async def open_connection(
    loop: asyncio.AbstractEventLoop,
    uri: WebSocketURI,
    options: ConnectOptions,
    opening: Opening,
    new_connection: NewConnection,
) -> WsConnection:
    """Run the phases of an open on ``loop`` (the running one); the open connection, or
    ``OpenFailed``."""
    ctx = _tls_arguments(uri, options, opening)
    sock = await _tcp(loop, uri.host, uri.port, options, opening)
    opening.tcp_ns = monotonic_ns() - opening.mark
    opening.mark = monotonic_ns()
    pinned: bytes | None = None
    if uri.secure and ctx is None:  # a keyword list: probe first, then connect again
        ctx, pinned = await _probe(sock, uri, options, opening)
        sock = await _tcp(loop, uri.host, uri.port, options, opening)
    elif uri.secure and opening.tls is None:
        opening.tls = TlsStatus(verified=True)
    ws = compat.new_client_protocol(
        uri,
        origin=options.origin,
        compression=options.compression,
        subprotocols=options.subprotocols,
        max_size=options.max_message_size,
    )
    conn = await _transport(loop, sock, ctx, pinned, new_connection(ws, loop), uri, opening)
    if ctx is not None:
        _check_peer(conn, pinned, options, uri.host, opening)
    await _upgrade(conn, uri, options, opening)
    conn.opened()
    return conn


def _tls_arguments(uri: WebSocketURI, options: ConnectOptions, opening: Opening) -> ssl.SSLContext | None:
    """The TLS context of a wss open, checked before anything goes on the wire; None for ws://
    (TLS options are then harmless, as in the manual) and when a probe must come first."""
    if not uri.secure:
        return None
    ignore = options.ignore_ssl_errors
    try:
        if ignore is None:
            return client_context(options, True)
        if ignore is ALL_SSL_ERRORS:
            opening.tls = TlsStatus(verified=False, all_ignored=True)
            return client_context(options, False)
        client_context(options, True)  # validates sslConfig / caCertificates now
        return None
    except TlsArgumentError as exc:
        raise OpenFailed(LastError.of(ErrorKind.ARGUMENT, str(exc))) from None


async def _tcp(
    loop: asyncio.AbstractEventLoop, host: str, port: int, options: ConnectOptions, opening: Opening
) -> socket.socket:
    """A connected non-blocking socket: the first address of ``host`` that accepts."""
    opening.phase = "TCP connect"
    family = _literal_family(host)
    if family is not None:
        infos: list[tuple[Any, Any, int, str, Any]] = [(family, socket.SOCK_STREAM, 0, "", (host, port))]
    else:  # a name: resolve (in the loop's executor)
        try:
            infos = list(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except socket.gaierror as exc:
            raise OpenFailed(
                LastError.of(ErrorKind.NETWORK, f"cannot resolve {host!r} ({exc.strerror})")
            ) from None
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        try:
            sock = _Socket(family, kind | _NONBLOCK, proto)
        except OSError as exc:
            raise OpenFailed(os_error(exc, host, port)) from None
        opening.sock = sock
        try:
            if not _NONBLOCK:
                sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if options.source_address:
                _bind_source(sock, options.source_address, host, port)
            await _connect(loop, sock, address)
        except OSError as exc:  # the next address, if any
            sock.close()
            opening.sock = None
            last = exc
            continue
        except BaseException:
            sock.close()
            opening.sock = None
            raise
        opening.sock = None
        return sock
    assert last is not None
    raise OpenFailed(os_error(last, host, port))


class _Socket(socket.socket):
    """A standard socket whose ``family`` and ``type`` read as the numbers they are (the C
    socket's own attributes), not as enum members: uvloop's ``create_connection(sock=...)``
    reads both at every open, and the standard properties convert each to its enum (2.4% of
    the CPU of an open and close in the S2 benchmark, py-spy). Equal to the enums all the
    same (they are ``IntEnum``)."""

    __slots__ = ()
    family = _socket.socket.family  # type: ignore[assignment]
    type = _socket.socket.type  # type: ignore[assignment]


@functools.lru_cache(maxsize=1024)
def _literal_family(host: str) -> socket.AddressFamily | None:
    """The address family of an IP literal, None for a name. Remembered: parsing the literal
    with ``ipaddress`` was ~4 us of every open in a load run (one host, thousands of opens)."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if literal.version == 6 else socket.AF_INET


async def _connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, address: Any) -> None:
    """Connect the non-blocking ``sock`` to the resolved ``address``: ``OSError`` when refused or
    unreachable. Not ``loop.sock_connect``: uvloop's resolves even a literal address, in its
    thread pool, and a loopback connect cost 155 us of CPU with it against 96 without it
    (connect and transport, 2 x 2,000 in one process, 2026-12-05)."""
    try:
        sock.connect(address)
        return
    except (BlockingIOError, InterruptedError):
        pass
    # On loopback the handshake is over when connect() returns: asking again finds it without
    # registering the socket with the loop and removing it again (two epoll_ctl calls, 6% of an
    # open). A second connect() says 0 once connected, EALREADY while the handshake runs, and
    # the error when it failed (Linux ``__inet_stream_connect``): one call and one system call,
    # where poll() and then getsockopt(SO_ERROR) were five calls and two (~1% of an open and
    # close, S2 benchmark, cProfile).
    error = sock.connect_ex(address)
    if not error or error == errno.EISCONN:  # (EISCONN: what other systems say)
        return
    if error in _CONNECTING:
        fd = sock.fileno()
        writable = loop.create_future()
        loop.add_writer(fd, settle, writable)
        try:
            await writable
        finally:
            loop.remove_writer(fd)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, os.strerror(error))


def _bind_source(sock: socket.socket, source_address: str, host: str, port: int) -> None:
    """Bind to ``source_address``, picking the port at connect(), by the full 4-tuple, not at
    bind(): without this, bind() searches for a port free for *every* destination, which gets
    slow and then fails long before the ~28,000 ports per destination run out."""
    if _BIND_ADDRESS_NO_PORT is not None:
        sock.setsockopt(socket.IPPROTO_IP, _BIND_ADDRESS_NO_PORT, 1)
    try:
        sock.bind((source_address, 0))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.EADDRINUSE):
            raise OpenFailed(os_error(exc, host, port)) from None
        raise OpenFailed(
            LastError.of(
                ErrorKind.ARGUMENT,
                f"sourceAddress {source_address!r} cannot be used ({(exc.strerror or str(exc)).lower()})",
            )
        ) from None


async def _probe(
    sock: socket.socket, uri: WebSocketURI, options: ConnectOptions, opening: Opening
) -> tuple[ssl.SSLContext, bytes | None]:
    """``ignoreSslErrors`` lists keywords: a probe handshake on ``sock`` (closed after) finds
    every certificate error; the context of the real handshake, and the leaf it is pinned to
    when errors were found and all of them are allowed."""
    opening.phase = "TLS handshake (probe)"
    opening.sock = sock
    try:
        found = await probe(sock, uri.host, options)
    except (ssl.SSLError, OSError) as exc:
        raise OpenFailed(_tls_failure(exc, uri.host, uri.port)) from None
    finally:
        opening.sock = None
        sock.close()
    verdict = decide(found.keywords, options.ignore_ssl_errors)
    if not verdict.ok:
        keyword = verdict.refused
        assert keyword is not None
        raise OpenFailed(
            LastError.of(ErrorKind.SSL, f"{keyword} ({found.messages[keyword]})", keyword=keyword)
        )
    if verdict.ignored:
        opening.tls = TlsStatus(verified=False, ignored_errors=verdict.ignored)
        return pinned_context(options, found.leaf_der), found.leaf_der
    opening.tls = TlsStatus(verified=True)
    return client_context(options, True), None


async def _transport(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    ctx: ssl.SSLContext | None,
    pinned: bytes | None,
    conn: WsConnection,
    uri: WebSocketURI,
    opening: Opening,
) -> WsConnection:
    """Put ``conn`` on ``sock``: the TLS handshake with ``ctx`` first, if any."""
    opening.phase = "TLS handshake" if ctx is not None else "HTTP upgrade"
    opening.sock = sock
    try:
        await loop.create_connection(
            lambda: conn,
            sock=sock,
            ssl=ctx,
            server_hostname=uri.host if ctx is not None else None,
            ssl_handshake_timeout=_UNLIMITED_HANDSHAKE_S if ctx is not None else None,
        )
    except ssl.SSLCertVerificationError as exc:
        if pinned is not None:  # fail closed: not the certificate the probe judged
            raise OpenFailed(_CHANGED_CERTIFICATE) from None
        raise OpenFailed(ssl_error(exc)) from None
    except (ssl.SSLError, OSError) as exc:
        raise OpenFailed(_tls_failure(exc, uri.host, uri.port)) from None
    opening.sock = None
    opening.conn = conn
    return conn


def _check_peer(
    conn: WsConnection, pinned: bytes | None, options: ConnectOptions, host: str, opening: Opening
) -> None:
    """After the TLS handshake: a pinned connection must have met the probe's certificate;
    with verification off, say which errors the certificate has anyway."""
    transport = conn.transport
    assert transport is not None
    if pinned is not None:
        if transport.get_extra_info("ssl_object").getpeercert(binary_form=True) != pinned:
            raise OpenFailed(_CHANGED_CERTIFICATE)
    elif options.ignore_ssl_errors is ALL_SSL_ERRORS:
        peer = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        met = leaf_errors(peer, host) if peer else ()
        opening.tls = TlsStatus(verified=False, ignored_errors=met, all_ignored=True)
    now = monotonic_ns()
    opening.tls_ns = now - opening.mark
    opening.mark = now


async def _upgrade(conn: WsConnection, uri: WebSocketURI, options: ConnectOptions, opening: Opening) -> None:
    """The HTTP upgrade: our request with the options' headers, the server's 101."""
    opening.phase = "HTTP upgrade"
    if conn.closed or conn.handshake_error is not None:
        # The server closed (or spoke first) before our request: websockets has already
        # half-closed the connection, and nothing may be written after that.
        raise OpenFailed(_upgrade_failure(conn, uri))
    try:
        accepted = await conn.upgrade(options.headers, USER_AGENT)
    except (InvalidHandshake, ValueError) as exc:  # InvalidHeader...; check_request lets none by
        bad = getattr(exc, "name", None)
        what = f"header {bad!r}" if bad else "the request"
        raise OpenFailed(
            LastError.of(ErrorKind.ARGUMENT, f"{what} cannot be sent ({type(exc).__name__})")
        ) from None
    if not accepted:
        raise OpenFailed(_upgrade_failure(conn, uri))


# --- failures in words ------------------------------------------------------------------------


def _tls_failure(exc: BaseException, host: str, port: int) -> LastError:
    if isinstance(exc, ssl.SSLError):
        return ssl_error(exc)
    if isinstance(exc, OSError):
        return os_error(exc, host, port)
    return LastError.of(ErrorKind.SSL, str(exc))


def _upgrade_failure(conn: WsConnection, uri: WebSocketURI) -> LastError:
    """Why the upgrade failed: the server's HTTP status, a TLS alert after the handshake, the
    connection closed before a whole answer, or an answer websockets could not accept."""
    exc = conn.handshake_error
    host, port = uri.host, uri.port
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return LastError.of(
            ErrorKind.HANDSHAKE_REJECTED, f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        )
    lost = conn.lost_exc
    if isinstance(lost, ssl.SSLError):  # e.g. a TLS 1.3 server refusing our client certificate
        return ssl_error(lost)
    if exc is None or isinstance(exc.__cause__, EOFError):  # closed before a whole HTTP response
        if uri.secure:
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
