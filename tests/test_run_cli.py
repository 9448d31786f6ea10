"""``wsload run`` end to end: bundled scenarios pass, made-to-fail ones fail with message and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from runner.cli import main

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted((ROOT / "scenarios").glob("*.yaml"))
FAILING = ROOT / "tests" / "failing"
REPORT_SCHEMA = json.loads((ROOT / "runner" / "schemas" / "report.schema.json").read_text())


def _run(tmp_path: Path, *args: str) -> tuple[int, dict[str, object]]:
    out = tmp_path / "report.json"
    code = main(["run", *args, "--report-dir", str(tmp_path / "reports"), "--json", str(out)])
    doc = json.loads(out.read_text()) if out.exists() else {}
    return code, doc


def test_there_are_bundled_scenarios() -> None:
    """The repository ships scenarios to run (the README's first command uses one)."""
    assert any(p.name == "smoke.yaml" for p in BUNDLED)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_scenario_passes(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each bundled scenario passes against the embedded server; its JSON report fits the schema."""
    code, doc = _run(tmp_path, str(path.relative_to(ROOT)))
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines()[-1].startswith("PASS ")
    Draft202012Validator(REPORT_SCHEMA).validate(doc)
    assert doc["passed"] is True and doc["exit_code"] == 0 and doc["interrupted"] is False
    reports = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert (
        len(reports) == 2 and reports[0].endswith(f"-{path.stem}.json") and reports[1].endswith(".junit.xml")
    )


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        ("wrong_text", 13, "expected text 'goodbye', got 'hello'"),
        ("timeout", 13, "read returned rc -2, expected rc 0: time-out: no message within 0.2s"),
        (
            "server_closes",
            13,
            "read returned rc 1, expected rc 0: connection closed by peer (code 4000, reason 'bye')",
        ),
        ("no_match", 10, "time-out: no matching message within 0.3s"),
    ],
)
def test_failing_scenario_exits_1_with_message_and_line(
    name: str, line: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scenario made to fail exits 1; console and JSON name the failed step's message and YAML line."""
    code, doc = _run(tmp_path, str(FAILING / f"{name}.yaml"))
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[-1].startswith("FAIL ")
    assert message in out and f":{line} " in out
    Draft202012Validator(REPORT_SCHEMA).validate(doc)
    assert doc["passed"] is False and doc["exit_code"] == 1
    failure = doc["failures"][0]  # type: ignore[index]
    assert failure["line"] == line and message in failure["message"]
    failed = [s for s in doc["steps"] if s["failures"]]  # type: ignore[attr-defined]
    assert len(failed) == 1 and failed[0]["line"] == line
    assert message in failed[0]["errors"][0]["message"]


def test_no_match_counts_skipped_messages(tmp_path: Path) -> None:
    """The matching read that timed out reports how many messages it skipped, and rc -2."""
    _, doc = _run(tmp_path, str(FAILING / "no_match.yaml"))
    read = doc["steps"][1]  # type: ignore[index]
    assert read["rc"] == {"-2": 1} and read["skipped_messages"] > 5
    assert doc["steps"][2]["skipped"] == 1  # type: ignore[index]


def test_lost_threshold_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every step passes but a lost threshold fails the run, saying by how much."""
    code, doc = _run(tmp_path, str(FAILING / "threshold_lost.yaml"))
    out = capsys.readouterr().out
    assert code == 1
    threshold = doc["thresholds"][0]  # type: ignore[index]
    assert threshold["expression"] == "read main.p99 < 1ms" and threshold["passed"] is False
    assert threshold["value"] >= 0.04 and threshold["line"] == 16
    assert "LOST read main.p99 < 1ms (line 16)" in out and "off by" in out


def test_several_files_worst_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Several files run in turn; one failure makes the exit 1 and a summary line lists it."""
    code = main(
        [
            "run",
            str(ROOT / "scenarios" / "smoke.yaml"),
            str(FAILING / "wrong_text.yaml"),
            "--report-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith("PASS echo smoke") and out[1].startswith("FAIL wrong expected text")
    assert out[-1] == "FAIL 1 of 2 scenarios: wrong expected text"
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_invalid_scenario_exits_2_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid file exits 2 with its problems before any scenario runs or any report is written."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: 3\n")
    code = main(
        ["run", str(ROOT / "scenarios" / "smoke.yaml"), str(bad), "--report-dir", str(tmp_path / "r")]
    )
    assert code == 2
    assert "bad.yaml" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_var_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``--var`` without NAME=VALUE exits 2."""
    assert main(["run", str(ROOT / "scenarios" / "smoke.yaml"), "--var", "novalue"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_var_and_target_override(tmp_path: Path) -> None:
    """``--var`` reaches templates and ``--target embedded`` replaces the file's target."""
    f = tmp_path / "v.yaml"
    f.write_text(
        "name: v\ntarget: ws://127.0.0.1:9\nvariables: {word: file}\n"
        "connections: {main: {url: /echo, timeout: 5s}}\n"
        "steps:\n  - open: main\n  - write: {connection: main, text: '{{ word }}'}\n"
        "  - read: main\n    expect: {text: cli}\n  - close: main\n"
    )
    code, doc = _run(tmp_path, str(f), "--var", "word=cli", "--target", "embedded")
    assert code == 0, doc
    assert str(doc["target"]).startswith("embedded (ws://127.0.0.1:")


def test_same_file_twice_keeps_both_reports(tmp_path: Path) -> None:
    """Two scenarios with the same file name get distinct report names, none overwritten."""
    smoke = str(ROOT / "scenarios" / "smoke.yaml")
    assert (
        main(["run", smoke, smoke, "--report-dir", str(tmp_path), "--json", str(tmp_path / "x.json"), "-q"])
        == 0
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "x-smoke.json" in names and "x-smoke-2.json" in names
    assert sum(n.endswith("-smoke.json") for n in names if n.startswith("wsload-")) == 1
    assert sum(n.endswith("-smoke-2.json") for n in names) == 2


def test_a_failed_run_says_why_on_its_verdict_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A monitor's one line (``-q``) says why a check failed: the first failure, shortly; a lost
    threshold likewise. A passing run's line says nothing more."""
    smoke = str(ROOT / "scenarios" / "smoke.yaml")
    assert main(["run", smoke, "--target", "ws://127.0.0.1:9", "-q", "--report-dir", ""]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("FAIL echo smoke") and "(first: open main: open returned rc -1" in line, line
    assert "connection refused" in line and len(line) < 400
    assert main(["run", smoke, "--threshold", "read.p99 < 1us", "-q", "--report-dir", ""]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "1 threshold lost (first: read.p99 < 1us: read.p99 was " in line, line
    assert main(["run", smoke, "-q", "--report-dir", ""]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("PASS echo smoke") and "first:" not in line, line
