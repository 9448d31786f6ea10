"""Connection URLs of a scenario: a relative one is joined to the target."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback", "resolve_url"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, no brackets) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_url(url: str, target: str | None) -> str:
    """A connection URL: absolute ones as they are, others joined to the target base URL."""
    if "://" in url or not target:
        return url
    return target.rstrip("/") + "/" + url.lstrip("/")
