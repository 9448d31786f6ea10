"""``wsload metrics``: every threshold name with its unit and meaning, the same table as the
README's, and every listed name accepted by the threshold parser (the catalog cannot drift)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.checks.thresholds import CATALOG, parse_threshold
from runner.cli import main
from runner.commands import metrics
from runner.scenario.model import Location

ROOT = Path(__file__).resolve().parent.parent


def test_readme_holds_the_same_table() -> None:
    """The README's threshold table is exactly what ``wsload metrics --markdown`` prints."""
    assert metrics.render(markdown=True) in (ROOT / "README.md").read_text()


def test_every_listed_name_parses_and_nothing_else_does(capsys: pytest.CaptureFixture[str]) -> None:
    """Each catalog name is a valid threshold (STEP as a step name); the listing shows them."""
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    where = Location("t", 1, 1)
    for m in CATALOG:
        subject = "read main" if m.subject == "STEP" else m.subject
        value = {"duration": "5ms", "count": "3", "fraction": "1%", "per_s": "10/s"}[m.unit]
        th = parse_threshold(
            f"{subject}.{m.stat} < {value}", step_names={"read main"}, kinds={"read"}, location=where
        )
        assert (th.subject, th.stat) == (subject, m.stat)
        assert re.search(rf"^{re.escape(m.subject)}\.", out, re.M), m.name
