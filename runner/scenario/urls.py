"""Small helpers shared by step modules."""

from __future__ import annotations

__all__ = ["render_error", "resolve_url"]


def render_error(exc: BaseException) -> str:
    """The text of a template that could not be rendered at run time (a missing capture)."""
    return f"template error: {exc}"


def resolve_url(url: str, target: str | None) -> str:
    """A connection URL: absolute ones as they are, others joined to the target base URL."""
    if "://" in url or not target:
        return url
    return target.rstrip("/") + "/" + url.lstrip("/")
