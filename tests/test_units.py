"""Units: durations, sizes, rates and percentages parse to base units, bad input gives UnitError."""

from __future__ import annotations

import re

import pytest

from runner.scenario.units import (
    DURATION_PATTERN,
    RATE_PATTERN,
    SIZE_PATTERN,
    UnitError,
    parse_duration,
    parse_fraction,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1.5s", 1.5),
        ("100us", 1e-4),
        (" 3 s ", 3.0),
        (2, 2.0),
        (0.5, 0.5),
        ("7", 7.0),
    ],
)
def test_duration_units(text: object, seconds: float) -> None:
    """Each duration unit and a plain number convert to seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5 seconds", "abc", "", "-1s", "1.s", True, None, [1], float("nan"), -3])
def test_duration_rejects(bad: object) -> None:
    """Words, negatives, booleans and non-finite values are not durations."""
    with pytest.raises(UnitError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64B", 64),
        ("1KiB", 1024),
        ("1kB", 1000),
        ("1MB", 1_000_000),
        ("2MiB", 2 << 20),
        ("1GiB", 1 << 30),
        (10, 10),
        ("0.5KiB", 512),
        ("12", 12),
    ],
)
def test_size_units(text: object, size: int) -> None:
    """Decimal and binary size units convert to bytes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["1.5B", "ten", "1XB", -1, 2.5])
def test_size_rejects(bad: object) -> None:
    """Fractions of a byte, unknown units and negatives are refused."""
    with pytest.raises(UnitError):
        parse_size(bad)


@pytest.mark.parametrize(("text", "rate"), [("500/s", 500.0), ("30/m", 0.5), ("3600/h", 1.0), (20, 20.0)])
def test_rate_units(text: object, rate: float) -> None:
    """Rates convert to events per second."""
    assert parse_rate(text) == pytest.approx(rate)


def test_rate_rejects_missing_unit() -> None:
    """A rate written with a slash needs a known time unit."""
    with pytest.raises(UnitError, match="not a rate"):
        parse_rate("500/week")


@pytest.mark.parametrize(("text", "fraction"), [("0.1%", 0.001), ("5%", 0.05), (0.02, 0.02)])
def test_fraction(text: object, fraction: float) -> None:
    """Percentages become fractions; plain numbers are fractions already."""
    assert parse_fraction(text) == pytest.approx(fraction)


def test_patterns_agree_with_parsers() -> None:
    """The schema's patterns accept exactly what the parsers accept, for a sample of inputs."""
    samples = ["250ms", "5s", "1m", "5 seconds", "1KiB", "64B", "1XB", "500/s", "30/m", "5/week", "1.s", "x"]
    for pattern, parse in (
        (DURATION_PATTERN, parse_duration),
        (SIZE_PATTERN, parse_size),
        (RATE_PATTERN, parse_rate),
    ):
        for sample in samples:
            try:
                parse(sample)
                parsed = True
            except UnitError:
                parsed = False
            assert bool(re.match(pattern, sample)) == parsed, (pattern, sample)
