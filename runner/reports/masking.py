"""Masking of secrets in every output: the scenario's ``secrets`` (``${ENV}`` values, private keys,
sensitive header values, userinfo, secret variables) and any value that follows a sensitive header
name. The forms a secret takes and how it is found are ``runner.scenario.secrets``'s; values made at run
time were masked when they were recorded (``SecretRegistry.guard``), so reports need only the
static ones.

Strings only are masked inside JSON trees, so numbers and structure stay valid.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.scenario.secrets import MASK, MIN_SECRET_LENGTH, SENSITIVE_HEADERS, SecretRegistry

__all__ = ["MASK", "MIN_SECRET_LENGTH", "SENSITIVE_HEADERS", "Masker"]


class Masker:
    """Replace every secret (longest first) and every sensitive header value with ``***``."""

    __slots__ = ("_registry",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._registry = SecretRegistry(secrets)  # given at construction: kept, none dropped

    def text(self, text: str) -> str:
        return self._registry.mask(text)

    def tree(self, value: Any) -> Any:
        """A JSON-able tree with every string (keys included) masked."""
        return self._registry.mask_tree(value)
