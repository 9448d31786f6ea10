"""The connection layer: WinCC OA's webSocketOpen/Write/Read/Close semantics over websockets'
Sans-I/O core, with return codes, last errors, selective TLS and nanosecond timing."""

from __future__ import annotations

from runner.client.client import USER_AGENT, WebSocketClient, parse_url
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
from runner.client.options import ConnectOptions

__all__ = [
    "RC_CLOSED",
    "RC_ERROR",
    "RC_OK",
    "RC_TIMEOUT",
    "USER_AGENT",
    "ConnectOptions",
    "ConnectTiming",
    "ErrorKind",
    "LastError",
    "PingResult",
    "ReadResult",
    "TlsStatus",
    "WebSocketClient",
    "parse_url",
]
