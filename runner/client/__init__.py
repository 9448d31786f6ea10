"""The connection layer: WinCC OA's webSocketOpen/Write/Read/Close semantics over websockets'
Sans-I/O core, with return codes, last errors, selective TLS and nanosecond timing.

Modules: ``client`` (the socket table and return codes), ``connect`` (the phases of an open),
``connection`` (one connection and all its state), ``direct`` and ``frames`` (the pure receive
and send shortcuts), ``compat`` (every use of websockets' internals, with the switch that turns
the direct receive path off), ``tls``, ``request``, ``codes``, ``options``.

``WebSocketClient``, ``parse_url`` and ``USER_AGENT`` are imported on first use: the scenario
model imports the option types from here, and loading websockets, asyncio and cryptography for
them added 90 ms to ``wsload validate``, which never opens a connection (145 -> 232 ms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from runner.client.options import (
    ALL_SSL_ERRORS,
    SSL_ERROR_KEYWORDS,
    ClientCertificate,
    ConnectOptions,
    IgnoreSslErrors,
)

if TYPE_CHECKING:
    from runner.client.client import USER_AGENT, WebSocketClient, parse_url

__all__ = [
    "ALL_SSL_ERRORS",
    "RC_CLOSED",
    "RC_ERROR",
    "RC_OK",
    "RC_TIMEOUT",
    "SSL_ERROR_KEYWORDS",
    "USER_AGENT",
    "ClientCertificate",
    "ConnectOptions",
    "ConnectTiming",
    "ErrorKind",
    "IgnoreSslErrors",
    "LastError",
    "PingResult",
    "ReadResult",
    "TlsStatus",
    "WebSocketClient",
    "parse_url",
]


def __getattr__(name: str) -> object:
    """The names of ``runner.client.client``, imported when first asked for (see above)."""
    if name in ("USER_AGENT", "WebSocketClient", "parse_url"):
        from runner.client import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
