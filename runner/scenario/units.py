"""Parse the human units of scenario files into base units: seconds, bytes, per second, fractions.

Kept apart from the loader so the schema's patterns, the loader and the threshold parser agree on
one grammar. Every parser raises ``UnitError`` (a ``ValueError``) with a message a user can act on.
"""

from __future__ import annotations

import math
import re

from runner.errors import BadValue

__all__ = [
    "DURATION_PATTERN",
    "RATE_PATTERN",
    "SIZE_PATTERN",
    "UnitError",
    "parse_bound",
    "parse_duration",
    "parse_fraction",
    "parse_rate",
    "parse_size",
]


class UnitError(BadValue):
    """A value does not parse in its unit; the message names the accepted forms."""


_NUM = r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+"

_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 1 / 60, "min": 1 / 60, "h": 1 / 3600}

#: Regular expressions the JSON Schema uses, so editors flag a bad value while it is typed.
DURATION_PATTERN = rf"^\s*(?:{_NUM})\s*(?:us|µs|ms|s|m|h|d)?\s*$"
SIZE_PATTERN = rf"^\s*(?:{_NUM})\s*(?:[bB]|[kKmMgG][iI]?[bB])?\s*$"
RATE_PATTERN = rf"^\s*(?:{_NUM})\s*/\s*(?:s|sec|m|min|h)\s*$"

_DURATION_RE = re.compile(rf"^\s*({_NUM})\s*(us|µs|ms|s|m|h|d)?\s*$")
_SIZE_RE = re.compile(rf"^\s*({_NUM})\s*([bB]|[kKmMgG][iI]?[bB])?\s*$")
_RATE_RE = re.compile(rf"^\s*({_NUM})\s*/\s*(s|sec|m|min|h)\s*$")
_PERCENT_RE = re.compile(rf"^\s*({_NUM})\s*%\s*$")


def _number(value: object, what: str, example: str) -> float | None:
    """A plain number as float, None for strings; bools and non-finite values are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnitError(f"{value!r} is not a {what} (use {example})")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise UnitError(f"{value!r} is not a finite {what}")
        if value < 0:
            raise UnitError(f"{what} must not be negative, got {value!r}")
        return float(value)
    return None


def parse_duration(value: object) -> float:
    """Seconds from ``250ms``, ``5s``, ``1m``, ``1h``, ``2d`` or a plain number of seconds."""
    example = "250ms, 5s, 1m, 1h or a number of seconds"
    number = _number(value, "duration", example)
    if number is not None:
        return number
    m = _DURATION_RE.match(str(value))
    if m is None:
        raise UnitError(f"{value!r} is not a duration (use {example})")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


#: A number with nothing after it (a duration bound written without its unit).
_BARE_RE = re.compile(r"\s*[0-9]+(\.[0-9]*)?\s*\Z")


def parse_bound(value: object) -> float:
    """A duration that bounds a latency (a threshold's value, ``expect: {latency: < 50ms}``): as
    ``parse_duration``, but its unit must be written: ``read.p99 < 50`` meant 50 ms to its
    writer and 50 s to the parser, a gate that could never fail."""
    text = str(value).strip()
    if _BARE_RE.match(text):
        raise UnitError(f"{text!r} has no unit: write {text}ms or {text}s")
    return parse_duration(value)


def parse_size(value: object) -> int:
    """Bytes from ``64B``, ``1KiB``, ``1MB`` (decimal) or a plain number of bytes."""
    example = "64B, 1KiB, 1MB or a number of bytes"
    number = _number(value, "size", example)
    if number is None:
        m = _SIZE_RE.match(str(value))
        if m is None:
            raise UnitError(f"{value!r} is not a size (use {example})")
        number = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    if number != int(number):
        raise UnitError(f"{value!r} is not a whole number of bytes")
    return int(number)


_PLAIN_RE = re.compile(rf"^\s*({_NUM})\s*$")


def parse_rate(value: object) -> float:
    """Events per second from ``500/s``, ``30/m``, ``100/h`` or a plain number per second."""
    example = "500/s, 30/m or a number per second"
    number = _number(value, "rate", example)
    if number is not None:
        return number
    if (plain := _PLAIN_RE.match(str(value))) is not None:
        return float(plain.group(1))
    m = _RATE_RE.match(str(value))
    if m is None:
        raise UnitError(f"{value!r} is not a rate (use {example})")
    return float(m.group(1)) * _RATE_UNITS[m.group(2)]


def parse_fraction(value: object) -> float:
    """A fraction from ``0.1%`` (0.001) or a plain number from 0 to 1 (``0.001``)."""
    example = "0.1% or a number from 0 to 1 such as 0.001"
    number = _number(value, "fraction", example)
    if number is None and (plain := _PLAIN_RE.match(str(value))) is not None:
        number = float(plain.group(1))
    if number is None:
        m = _PERCENT_RE.match(str(value))
        if m is None:
            raise UnitError(f"{value!r} is not a fraction (use {example})")
        number = float(m.group(1)) / 100.0
        if number > 1:
            raise UnitError(f"{value!r} is more than 100%")
        return number
    if number > 1:
        raise UnitError(f"{value!r} is more than 1 (a fraction: 1 is 100%); did you mean {value}%?")
    return number
