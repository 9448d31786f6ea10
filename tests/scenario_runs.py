"""Running a scenario text as ``wsload run`` does and reading its JSON report: what the tests of
the step kinds share (not a test module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.cli import main


def run_scenario(tmp_path: Path, text: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Exit code and JSON report of ``wsload run`` on ``text`` (written to ``tmp_path``)."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    out = tmp_path / "s.json"
    code = main(["run", str(path), "--json", str(out), "--report-dir", "", "-q", *args])
    return code, json.loads(out.read_text())


def step_named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The report's row of the step called ``name``."""
    return next(s for s in doc["steps"] if s["name"] == name)
