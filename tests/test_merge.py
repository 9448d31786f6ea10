"""Shard reports merged exactly (``runner.load.merge``): pure tests, no network and no event loop."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.load.merge import MergeError, merge_recorders, merge_results, parse_shard, shard_info
from runner.load.settings import LoadOverrides, apply_overrides
from runner.loader import load_scenario_text
from runner.results.codec import encode
from runner.results.load_figures import LoadSummary
from runner.results.recorders import RunRecorder
from runner.results.result import RunSettings, build_result
from runner.scenario.model import Scenario

SCENARIO = """\
name: merge me
target: ws://127.0.0.1:9
connections:
  main: {url: /echo}
steps:
  - open: main
  - write: {connection: main, text: hi}
  - read: main
  - close: main
load:
  vus: 6
  iterations: 2
thresholds:
  - read.count >= 12
  - read.p99 < 1s
"""

NS = 1_000_000_000


def _scenario(text: str = SCENARIO) -> Scenario:
    return apply_overrides(load_scenario_text(text, "merge.yaml"), LoadOverrides())


def _fill(rec: RunRecorder, latencies_ns: list[int], second: int, rc_errors: int = 0) -> None:
    """Record reads with these latencies in ``second`` of the run, and some -2 time-outs."""
    step = rec.step("read main", "read", "main", 7)
    for ns in latencies_ns:
        step.record(ok=True, rc=0, rc_is_success=True, latency_ns=ns)
        rec.timeseries.step(second, True, None, ns, message=True)
    for _ in range(rc_errors):
        step.record(ok=False, rc=-2, rc_is_success=False, latency_ns=None, error="read timed out")
        rec.timeseries.step(second, False, -2, None)
    rec.iterations_started += len(latencies_ns)
    rec.iterations_completed += len(latencies_ns)
    rec.timeseries.gauges(second, len(latencies_ns), len(latencies_ns))


def _shard_doc(
    scenario: Scenario, index: int, count: int, rec: RunRecorder, start_unix_ns: int
) -> dict[str, Any]:
    shard = shard_info(scenario, index=index, count=count, start_unix_ns=start_unix_ns, recorder=rec)
    result = build_result(
        rec,
        scenario_name=scenario.name,
        scenario_file=scenario.file,
        started_at="2026-11-25T00:00:00Z",
        duration_s=2.0,
        target="ws://127.0.0.1:9",
        settings=RunSettings(
            mode="load", load=LoadSummary(model="closed", workers=1, planned_duration_s=None), shard=shard
        ),
    )
    return json.loads(json.dumps(encode(result)))  # as read back from a file


def _samples(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.lognormvariate(11.5, 1.0)) for _ in range(n)]


def test_histograms_and_counts_merge_to_one_recorders() -> None:
    """Three shards' recorders merged give the same counts, rc counts and percentiles as one recorder."""
    parts = [_samples(400, seed) for seed in (1, 2, 3)]
    one = RunRecorder(0)
    shards = []
    for i, samples in enumerate(parts):
        _fill(one, samples, second=0, rc_errors=i + 1)
        rec = RunRecorder(0)
        _fill(rec, samples, second=0, rc_errors=i + 1)
        shards.append((rec.serialize(), 0))
    merged = merge_recorders(shards)
    a, b = merged.steps["read main"], one.steps["read main"]
    assert (a.count, a.ok, a.failures, a.rc, a.errors) == (b.count, b.ok, b.failures, b.rc, b.errors)
    assert a.rc == {"-2": 6} and a.count == 1206
    assert a.latency.summary() == b.latency.summary()
    assert merged.iterations_completed == one.iterations_completed == 1200


def test_time_series_align_on_wall_clock_seconds() -> None:
    """A shard that started 2 s later lands 2 s later in the merged series; gauges add up per second."""
    early, late = RunRecorder(0), RunRecorder(0)
    _fill(early, [1_000_000] * 3, second=2)
    _fill(late, [1_000_000] * 5, second=0)
    merged = merge_recorders([(early.serialize(), 0), (late.serialize(), 2)]).timeseries.serialize()
    by_t = {e["t"]: e for e in merged}
    assert list(by_t) == [2]
    assert by_t[2]["messages"] == 8 and by_t[2]["vus"] == 8 and by_t[2]["connections"] == 8


def test_thresholds_are_evaluated_again_on_the_merged_result() -> None:
    """read.count >= 12 fails on each shard of 6 reads and passes on the merge of both."""
    scenario = _scenario()
    docs = []
    for k in (1, 2):
        rec = RunRecorder(0)
        _fill(rec, [2_000_000] * 6, second=0)
        docs.append(_shard_doc(scenario, k, 2, rec, start_unix_ns=1_800_000_000 * NS))
    shards = [parse_shard(f"s{k}.json", d) for k, d in enumerate(docs, 1)]
    merged = merge_results(shards)
    assert merged.passed and merged.exit_code == 0, merged.error
    assert [t.passed for t in merged.thresholds if not t.default] == [True, True]
    assert merged.thresholds[0].value == 12.0
    assert encode(merged)["settings"]["load"]["shards_merged"] == [1, 2]


def test_missing_shard_makes_the_merge_incomplete() -> None:
    """Two of three shards: the merge says shard 2 is missing and does not pass."""
    scenario = _scenario()
    shards = []
    for k in (1, 3):
        rec = RunRecorder(0)
        _fill(rec, [2_000_000] * 6, second=0)
        shards.append(parse_shard(f"s{k}.json", _shard_doc(scenario, k, 3, rec, 1_800_000_000 * NS)))
    merged = merge_results(shards)
    assert not merged.passed and merged.exit_code == 1
    assert "shard(s) 2 of 3 missing" in merged.error
    assert encode(merged)["settings"]["load"]["shards_missing"] == [2]


def test_mixed_scenarios_and_duplicates_are_refused() -> None:
    """Shards of different scenarios, or one shard twice, raise MergeError (exit 2)."""
    a, b = _scenario(), _scenario(SCENARIO.replace("merge me", "another one"))
    rec = RunRecorder(0)
    _fill(rec, [1_000_000], second=0)
    one = parse_shard("a.json", _shard_doc(a, 1, 2, rec, 0))
    other = parse_shard("b.json", _shard_doc(b, 2, 2, rec, 0))
    with pytest.raises(MergeError, match="different scenario"):
        merge_results([one, other])
    with pytest.raises(MergeError, match="given twice"):
        merge_results([one, parse_shard("c.json", _shard_doc(a, 1, 2, rec, 0))])
    assert MergeError("x").exit_code == 2


def test_merge_command_refuses_a_report_that_is_not_a_shard(tmp_path: Path, capsys: Any) -> None:
    """wsload merge of a plain run report exits 2 and says it is not a shard report."""
    scenario = _scenario()
    rec = RunRecorder(0)
    _fill(rec, [1_000_000], second=0)
    doc = _shard_doc(scenario, 1, 1, rec, 0)
    del doc["settings"]["shard"]
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(doc))
    assert main(["merge", str(path)]) == 2
    assert "not a shard report" in capsys.readouterr().err
