"""Bundled scenarios validate; each file of the broken catalogue fails at its stated line and message.

A broken file states what it expects in header comments: ``# expect: LINE: message substring``
(the offending line also carries a ``# <-`` marker for people reading it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from runner.errors import ScenarioError
from runner.loader import load_scenario
from runner.scenario.validation import scenario_schema

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
BROKEN = sorted((Path(__file__).resolve().parent / "broken").glob("*.yaml"))
EXPECT_RE = re.compile(r"^# expect: (\d+): (.+)$", re.M)


def test_catalogues_are_large_enough() -> None:
    """The bundle has the five required scenarios and at least 25 broken files."""
    names = {p.stem for p in SCENARIOS}
    assert {"smoke", "rpc", "pubsub", "tls", "load"} <= names
    assert len(BROKEN) >= 25


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_bundled_scenario_validates(path: Path) -> None:
    """Every scenario in scenarios/ loads, starts with the schema comment and targets the embedded server."""
    scenario = load_scenario(path)
    assert scenario.name
    assert scenario.steps or all(p.steps for p in scenario.populations)  # a plan: every population's
    assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/scenario.schema.json")
    assert scenario.target in ("embedded", "embedded-tls")


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_file_fails_as_stated(path: Path) -> None:
    """Each broken file raises ScenarioError with a problem at the stated line holding the stated text."""
    expected = EXPECT_RE.findall(path.read_text())
    assert expected, f"{path.name} states no '# expect:' line"
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    found = [(p.line, p.message) for p in info.value.problems]
    for line, text in expected:
        assert any(pl == int(line) and text in msg for pl, msg in found), (line, text, found)
    for problem in info.value.problems:
        assert problem.file == str(path) and problem.line >= 1 and problem.column >= 1


def _walk(node: Any, where: str, out: list[str]) -> None:
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if not isinstance(sub, dict) or "description" not in sub:
                out.append(f"{where}.{name}")
        for key, value in node.items():
            _walk(value, f"{where}.{key}", out)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, f"{where}[{i}]", out)


def test_report_schema_knows_every_step_kind() -> None:
    """The JSON report's step kinds are the kinds wsload has (a report of a receive once failed
    the report schema)."""
    from runner.steps import KINDS

    report = json.loads((ROOT / "runner" / "schemas" / "report.schema.json").read_text())
    kind = report["properties"]["steps"]["items"]["properties"]["kind"]
    assert sorted(kind["enum"]) == sorted(KINDS)


def test_schema_is_valid_and_described() -> None:
    """The schema is valid draft 2020-12, closed to unknown keys, and every property has a description."""
    schema = scenario_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    missing: list[str] = []
    _walk(schema, "#", missing)
    assert missing == []
    closed = [d for d in schema["$defs"].values() if d.get("type") == "object" and "properties" in d]
    assert closed and all(d.get("additionalProperties") is False for d in closed)


def test_schema_file_is_json() -> None:
    """The shipped schema file parses as JSON with the draft 2020-12 meta-schema."""
    text = (ROOT / "runner" / "schemas" / "scenario.schema.json").read_text()
    assert json.loads(text)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
