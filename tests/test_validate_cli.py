"""``wsload validate`` and ``wsload schema`` through the CLI's main(): output format and exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import runner.cli as cli
from runner.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
PROBLEM_RE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+)$", re.M)


def test_valid_files_print_ok(capsys: pytest.CaptureFixture[str]) -> None:
    """Valid files each print 'OK FILE' and the exit code is 0."""
    files = [str(p) for p in sorted((ROOT / "scenarios").glob("*.yaml"))]
    assert cli.main(["validate", *files]) == ExitCode.PASSED
    out = capsys.readouterr().out.splitlines()
    assert out == [f"OK {f}" for f in files]


def test_problems_printed_with_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file prints FILE:LINE:COL: path: message plus an excerpt, and exits 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "target: embedded\nconnections: {main: {url: /echo}}\nsteps:\n  - raed: main\n  - sleep: x\n"
    )
    assert cli.main(["validate", str(bad)]) == ExitCode.INVALID
    out = capsys.readouterr().out
    found = [m.groupdict() for m in PROBLEM_RE.finditer(out)]
    assert [(f["line"], f["col"]) for f in found] == [("4", "5"), ("5", "12")]
    assert found[0]["rest"] == "steps[0].raed: unknown step kind 'raed', did you mean 'read'?"
    assert "   4 |   - raed: main" in out or "  4 |   - raed: main" in out
    assert "^" in out


def test_mixed_files_exit_2_and_report_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With a valid, an invalid and a missing file, each is reported and the exit code is 2."""
    good = ROOT / "scenarios" / "smoke.yaml"
    missing = tmp_path / "missing.yaml"
    broken = ROOT / "tests" / "broken" / "http_url.yaml"
    assert cli.main(["validate", str(good), str(broken), str(missing)]) == ExitCode.INVALID
    out = capsys.readouterr().out
    assert f"OK {good}" in out
    assert f"{missing}:1:1: no such file" in out
    assert re.search(
        rf"^{re.escape(str(broken))}:5:\d+: connections\.main\.url: .*use ws:// or wss://", out, re.M
    )


def test_var_and_target_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--var makes a template variable known and --target allows relative urls."""
    f = tmp_path / "s.yaml"
    f.write_text("connections: {main: {url: /echo}}\nsteps: [{open: main}, {write: {text: '{{ who }}'}}]\n")
    assert cli.main(["validate", str(f)]) == ExitCode.INVALID
    capsys.readouterr()
    assert (
        cli.main(["validate", "--var", "who=me", "--target", "ws://127.0.0.1:1", str(f)]) == ExitCode.PASSED
    )
    assert capsys.readouterr().out.strip() == f"OK {f}"


def test_bad_var_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A --var without '=' is a usage error with exit 2 and a message on stderr."""
    assert cli.main(["validate", "--var", "novalue", "x.yaml"]) == ExitCode.INVALID
    assert "--var needs NAME=VALUE" in capsys.readouterr().err


def test_no_files_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """validate without a file is an argparse usage error (exit 2)."""
    assert cli.main(["validate"]) == ExitCode.INVALID
    assert "FILE" in capsys.readouterr().err


def test_schema_command_prints_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """wsload schema prints the shipped JSON Schema and exits 0."""
    assert cli.main(["schema"]) == ExitCode.PASSED
    out = capsys.readouterr().out
    schema = json.loads(out)
    assert schema["title"] == "wsload scenario" and "steps" in schema["properties"]
    assert out == (ROOT / "runner" / "schemas" / "scenario.schema.json").read_text()
