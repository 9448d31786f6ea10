"""The embedded test server (``wsload serve``) and the certificates it and the tests use."""

from __future__ import annotations

from runner.server.embedded import ROUTES, EmbeddedServer

__all__ = ["ROUTES", "EmbeddedServer"]
