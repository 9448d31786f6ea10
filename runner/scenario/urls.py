"""Connection URLs of a scenario: a relative one is joined to the target."""

from __future__ import annotations

__all__ = ["resolve_url"]


def resolve_url(url: str, target: str | None) -> str:
    """A connection URL: absolute ones as they are, others joined to the target base URL."""
    if "://" in url or not target:
        return url
    return target.rstrip("/") + "/" + url.lstrip("/")
