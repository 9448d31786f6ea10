"""Masking of secrets in every output: the scenario's ``secrets`` (``${ENV}`` values, private keys,
Authorization/Cookie header values) and any value that follows a sensitive header name.

Strings only are masked inside JSON trees, so numbers and structure stay valid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "MIN_SECRET_LENGTH", "SENSITIVE_HEADERS", "Masker"]

MASK = "***"
ELLIPSIS = "\u2026"  # how runner.expect.describe shortens long values
#: Shorter values are not masked as substrings: masking every "1" would make reports unreadable.
MIN_SECRET_LENGTH = 3
SENSITIVE_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
)

_NAMES = "|".join(re.escape(h) for h in SENSITIVE_HEADERS)
_HEADER_RE = re.compile(rf"""(?i)(\b(?:{_NAMES})\b["']?\s*[:=]\s*["']?)([^"'\r\n]+)""")


class Masker:
    """Replace every secret (longest first) and every sensitive header value with ``***``."""

    __slots__ = ("_pattern", "_values")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for s in secrets:
            if not s or len(s) < MIN_SECRET_LENGTH:
                continue
            values.add(s)
            # A secret echoed inside a JSON message appears escaped (quotes, backslashes, non-ASCII),
            # possibly twice (JSON text inside a JSON string).
            once = json.dumps(s)[1:-1]
            values.update((once, json.dumps(s, ensure_ascii=False)[1:-1], json.dumps(once)[1:-1]))
            # Multi-line secrets (PEM keys) also appear JSON- or repr-escaped.
            if "\n" in s:
                values.add(s.replace("\n", "\\n"))
                values.update(line for line in s.splitlines() if len(line) >= 16)
        ordered = sorted(values, key=len, reverse=True)
        self._values = tuple(ordered)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
            if ELLIPSIS in text:
                text = self._cut_secrets(text)
        return _HEADER_RE.sub(lambda m: m.group(1) + MASK, text)

    def _cut_secrets(self, text: str) -> str:
        """A value shortened with an ellipsis may end in the first part of a secret: mask it."""
        parts = text.split(ELLIPSIS)
        for i, part in enumerate(parts[:-1]):
            for secret in self._values:
                for n in range(min(len(secret), len(part)), MIN_SECRET_LENGTH - 1, -1):
                    if part.endswith(secret[:n]):
                        parts[i] = part[:-n] + MASK
                        break
                else:
                    continue
                break
        return ELLIPSIS.join(parts)

    def tree(self, value: Any) -> Any:
        """A JSON-able tree with every string (keys included) masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self.tree(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.tree(v) for v in value]
        return value
