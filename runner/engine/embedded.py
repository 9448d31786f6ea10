"""``target: embedded`` / ``embedded-tls`` (or ``--target embedded``): the test server in-process.

The server starts on a free port of 127.0.0.1 for the run and stops after it; with TLS its
generated CA is trusted for connections that name no CA of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from runner.errors import RunError

__all__ = ["EMBEDDED_TARGETS", "ResolvedTarget", "is_embedded", "resolved_target"]

#: target name -> whether the embedded server speaks TLS
EMBEDDED_TARGETS: dict[str, bool] = {"embedded": False, "embedded-tls": True}


def is_embedded(target: str | None) -> bool:
    return target in EMBEDDED_TARGETS


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """The base URL connections are relative to, and a CA PEM to trust (embedded TLS)."""

    url: str | None
    ca_pem: str | None = None
    embedded: bool = False

    @property
    def label(self) -> str:
        if self.embedded:
            return f"embedded ({self.url})"
        return self.url or ""


@asynccontextmanager
async def resolved_target(target: str | None) -> AsyncIterator[ResolvedTarget]:
    """Yield the target to run against, starting the embedded server when it is named."""
    if target is None or not is_embedded(target):
        yield ResolvedTarget(target)
        return
    from runner.server import EmbeddedServer

    tls = EMBEDDED_TARGETS[target]
    server = EmbeddedServer(host="127.0.0.1", port=0, tls=tls)
    try:
        await server.start()
    except OSError as exc:
        raise RunError(f"the embedded server could not start: {exc}") from exc
    try:
        yield ResolvedTarget(server.url, server.ca_pem if tls else None, embedded=True)
    finally:
        await server.stop()
