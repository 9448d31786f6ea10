"""The JSON report's codec (``runner.results.codec``): typed results to the document and back,
byte for byte for every report wsload writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.reports import json_report
from runner.results.codec import decode, encode
from runner.results.load_figures import GeneratorFigures, LoadSummary, PlanFigures, SaturationBounds
from runner.results.recorders import RunRecorder
from runner.results.result import RunResult, RunSettings, build_result
from runner.scenario.model import Stage

ROOT = Path(__file__).resolve().parent.parent

OPEN_MODEL = """\
name: codec open model
target: embedded
connections:
  main: {url: /echo, timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: hi}
  - read: main
  - close: main
load:
  rate: 10/s
  duration: 1s
  graceful_stop: 1s
thresholds:
  - read.p99 < 5s
"""


def _rewritten(path: Path) -> tuple[str, str]:
    """The report file's text, and the text the codec writes for what it reads from it."""
    text = path.read_text()
    return text, json_report.render(decode(json.loads(text)))


def _result(settings: RunSettings) -> RunResult:
    rec = RunRecorder(0)
    step = rec.step("read main", "read", "main", 7)
    step.record(ok=True, rc=0, rc_is_success=True, latency_ns=2_000_000)
    rec.timeseries.step(0, True, None, 2_000_000, message=True)
    rec.timeseries.gauges(1, 3, 2)
    rec.iterations_started = rec.iterations_completed = 1
    return build_result(
        rec,
        scenario_name="codec",
        scenario_file="codec.yaml",
        started_at="2026-11-25T00:00:00.000Z",
        duration_s=1.5,
        target="ws://127.0.0.1:9",
        settings=settings,
    )


def test_check_report_reads_back_to_the_same_bytes(tmp_path: Path) -> None:
    """A check run's JSON report, read and written again, is the same text."""
    out = tmp_path / "check.json"
    code = main(["run", str(ROOT / "scenarios" / "smoke.yaml"), "-q", "--report-dir", "", "--json", str(out)])
    assert code == 0
    text, again = _rewritten(out)
    assert again == text
    assert list(json.loads(text)["settings"]) == ["read_timeout_s", "run_timeout_s", "mode"]


def test_shard_and_merged_reports_read_back_to_the_same_bytes(tmp_path: Path) -> None:
    """Open-model shard reports and their merge, read and written again, are the same text."""
    scenario = tmp_path / "open.yaml"
    scenario.write_text(OPEN_MODEL)
    shards = [tmp_path / f"s{k}.json" for k in (1, 2)]
    for k, path in enumerate(shards, 1):
        argv = ["run", str(scenario), "--shard", f"{k}/2", "-q", "--report-dir", "", "--json", str(path)]
        assert main(argv) == 0
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, shards), "-q", "-o", str(merged)]) == 0
    for path in (*shards, merged):
        text, again = _rewritten(path)
        assert again == text, path.name
    load = json.loads(merged.read_text())["settings"]["load"]
    assert load["model"] == "open" and "iterations" in load and "iterations_per_vu" not in load
    assert load["shards_merged"] == [1, 2] and "nofile" not in load


def test_damaged_shard_data_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shard report whose shard part lacks a field: wsload merge exits 2 naming the field."""
    scenario = tmp_path / "open.yaml"
    scenario.write_text(OPEN_MODEL)
    report = tmp_path / "s1.json"
    argv = ["run", str(scenario), "--shard", "1/1", "-q", "--report-dir", "", "--json", str(report)]
    assert main(argv) == 0
    doc = json.loads(report.read_text())
    del doc["settings"]["shard"]["start_unix_ns"]
    report.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["merge", str(report), "-q"]) == 2
    assert "damaged shard data (field 'start_unix_ns')" in capsys.readouterr().err


def test_load_figures_keep_their_report_keys() -> None:
    """A closed model's iterations are written as iterations_per_vu; a merge has its shard
    figures and no open-files limit; a local run has the limit; both read back unchanged."""
    generator = GeneratorFigures.measured(
        (),
        seconds=2,
        saturated_seconds=1,
        samples_in_saturated=0.25,
        loop_lag_ms=None,
        saturated_when=SaturationBounds(0.9, 10.0),
    )
    local = LoadSummary(
        model="closed",
        vus=3,
        iterations=4,
        stages=(Stage(1.0, 3.0),),
        plan=PlanFigures.measured("closed", 1.0, 3.0, 2.0),
        generator=generator,
        nofile=1024,
    )
    merged = LoadSummary(model="closed", iterations=4, shards=2, shards_merged=(1, 2), nofile=None)
    for summary, present, absent in (
        (local, {"iterations_per_vu", "nofile", "plan", "generator"}, {"iterations", "shards"}),
        (merged, {"iterations_per_vu", "shards", "shards_merged", "shards_missing"}, {"nofile"}),
    ):
        result = _result(RunSettings(mode="load", read_timeout_s=2.0, load=summary))
        doc = json.loads(json.dumps(encode(result)))
        keys = set(doc["settings"]["load"])
        assert present <= keys and not absent & keys, keys
        assert decode(doc) == result
        assert encode(decode(doc)) == doc
    plan = encode(_result(RunSettings(load=local)))["settings"]["load"]["plan"]
    assert plan["delivered"] == 0.666667 and plan["dropped"] is None
    assert encode(_result(RunSettings(load=local)))["settings"]["load"]["generator"]["saturated_share"] == 0.5


def test_seconds_write_only_what_was_measured() -> None:
    """A second without gauges or health has no such keys; the last, partial second says how much
    of it the run covered."""
    doc = encode(_result(RunSettings(mode="load")))
    first, last = doc["timeseries"]
    assert list(first) == ["t", "starts", "iterations", "steps", "messages", "failures", "rc", "latency_ms"]
    assert first["messages"] == 1 and first["latency_ms"]["p50"] == 2.0
    assert last["vus"] == 3 and last["connections"] == 2 and last["paused"] == 0
    assert last["partial"] == 0.5 and last["latency_ms"] is None
