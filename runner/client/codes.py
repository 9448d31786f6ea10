"""Return codes, error classes and result records of the connection layer, and the pure mappings
from what the network reports (errno, OpenSSL verify codes, HTTP status) to them.

Like WinCC OA's webSocket* functions, failures are return codes plus a last-error text, never
exceptions; these mappings are pure so they are unit-tested without a socket.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

__all__ = [
    "RC_CLOSED",
    "RC_ERROR",
    "RC_OK",
    "RC_TIMEOUT",
    "ConnectTiming",
    "ErrorKind",
    "LastError",
    "PingResult",
    "ReadResult",
    "TlsStatus",
    "keywords_for_verify_code",
    "os_error",
]

RC_OK: Final = 0
RC_CLOSED: Final = 1  # webSocketRead: the peer closed the connection
RC_ERROR: Final = -1
RC_TIMEOUT: Final = -2


class ErrorKind(StrEnum):
    """The class of an error, as webSocketOpen's manual page lists them (plus read/write ones)."""

    INVALID_URL = "invalid url"
    UNSUPPORTED_SCHEME = "unsupported scheme"
    NO_FREE_SOCKETS = "no more free sockets"
    ARGUMENT = "argument error in options"
    NETWORK = "network error"
    SSL = "SSL error"
    HANDSHAKE_REJECTED = "handshake rejected"
    TIMEOUT = "time-out"
    CLOSED = "connection closed"
    PROTOCOL = "protocol error"
    UNKNOWN_SOCKET = "unknown socket"


@dataclass(frozen=True, slots=True)
class LastError:
    """What getLastError() would say: the class, the full text, the Qt SSL keyword if any, and
    the return code that accompanied it. ``text`` starts with the class name."""

    kind: ErrorKind
    text: str
    keyword: str | None
    rc: int

    @classmethod
    def of(cls, kind: ErrorKind, detail: str, rc: int = RC_ERROR, keyword: str | None = None) -> LastError:
        return cls(kind, f"{kind.value}: {detail}" if detail else kind.value, keyword, rc)

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class ReadResult:
    """webSocketRead's outcome. ``received_ns`` is monotonic_ns when the frame was parsed;
    ``close_code`` is set with rc 1.

    Not frozen, though never changed: one is made per received message, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) took 443 ns against 119 ns."""

    rc: int
    data: str | bytes | None = None
    received_ns: int = 0
    close_code: int | None = None
    close_reason: str = ""


@dataclass(frozen=True, slots=True)
class PingResult:
    """A ping's outcome: rc 0 with the round-trip time in ns, or -1 / -2."""

    rc: int
    rtt_ns: int = 0


class ConnectTiming(NamedTuple):
    """Where the time of an open went: name resolution and TCP, TLS (all handshakes, probe
    included), the HTTP upgrade; ``total_ns`` is the whole open. A named tuple: one is made at
    every open, in 0.24 us against a frozen dataclass's 0.53."""

    tcp_ns: int = 0
    tls_ns: int = 0
    upgrade_ns: int = 0
    total_ns: int = 0


@dataclass(frozen=True, slots=True)
class TlsStatus:
    """How a wss connection's certificate was treated, for reports.

    ``verified``: full verification passed. ``ignored_errors``: the keywords that were present
    and ignored because ``ignoreSslErrors`` allowed them. ``all_ignored``: verification was off
    (``ignoreSslErrors`` as a non-list), so the errors were not even enumerated.
    """

    verified: bool
    ignored_errors: tuple[str, ...] = ()
    all_ignored: bool = False


#: OpenSSL (3.x numbering) X509_V_ERR code -> Qt QSslError keywords, as Qt maps them.
_VERIFY_KEYWORDS: Final[dict[int, tuple[str, ...]]] = {
    2: ("UnableToGetIssuerCertificate",),
    4: ("UnableToDecryptCertificateSignature",),
    6: ("UnableToDecodeIssuerPublicKey",),
    7: ("CertificateSignatureFailed",),
    9: ("CertificateNotYetValid",),
    10: ("CertificateExpired",),
    13: ("InvalidNotBeforeField",),
    14: ("InvalidNotAfterField",),
    18: ("SelfSignedCertificate",),
    19: ("SelfSignedCertificateInChain",),
    # Qt reports UnableToVerifyFirstCertificate together with this one.
    20: ("UnableToGetLocalIssuerCertificate", "UnableToVerifyFirstCertificate"),
    21: ("UnableToVerifyFirstCertificate",),
    23: ("CertificateRevoked",),
    24: ("InvalidCaCertificate",),  # OpenSSL 1.1 numbering
    79: ("InvalidCaCertificate",),
    25: ("PathLengthExceeded",),
    26: ("InvalidPurpose",),
    27: ("CertificateUntrusted",),
    28: ("CertificateRejected",),
    62: ("HostNameMismatch",),
    64: ("HostNameMismatch",),
}


def keywords_for_verify_code(code: int) -> tuple[str, ...]:
    """The Qt keywords for an OpenSSL verify code; unknown codes are ``UnspecifiedError``."""
    return _VERIFY_KEYWORDS.get(code, ("UnspecifiedError",))


_NO_FREE: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_REASONS: Final[dict[int, str]] = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
    errno.EPIPE: "broken pipe",
}


def os_error(exc: OSError, host: str, port: int, *, connecting: bool = True) -> LastError:
    """Map an OSError from socket creation or connect to NO_FREE_SOCKETS or NETWORK, with the
    address in the text (``network error: connection refused to 127.0.0.1:9``)."""
    code = exc.errno
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if code in _NO_FREE or (connecting and code == errno.EADDRNOTAVAIL):
        reason = exc.strerror or str(exc)
        return LastError.of(ErrorKind.NO_FREE_SOCKETS, f"{reason} (errno {code}) connecting to {where}")
    reason = _REASONS.get(code or 0) or (exc.strerror or str(exc) or type(exc).__name__).lower()
    return LastError.of(ErrorKind.NETWORK, f"{reason} to {where}")
