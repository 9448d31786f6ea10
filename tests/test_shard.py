"""``wsload run --shard K/N`` against one embedded server, merged with ``wsload merge``."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import scaled
from jsonschema import Draft202012Validator

from runner.cli import main
from runner.server import EmbeddedServer

# A read on a silent connection times out on purpose (rc -2, expected), so rc counts are compared too.
SCENARIO = """\
name: shard echo
target: embedded
connections:
  main: {url: /echo, timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: "hi {{ vu }}"}
  - read: main
    expect: {text: "hi {{ vu }}"}
  - name: no message
    read: {connection: main, timeout: 20ms}
    expect: {rc: -2}
  - close: main
load:
  vus: 7
  iterations: 3
thresholds:
  - read main.count >= 21
"""


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = EmbeddedServer(host="127.0.0.1", port=0).run_in_thread()
    try:
        yield server.url
    finally:
        server.stop_thread()


def _file(tmp_path: Path, text: str = SCENARIO, name: str = "shard.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(tmp_path: Path, path: Path, url: str, out: str, *more: str) -> tuple[int, dict[str, Any]]:
    code = main(
        ["run", str(path), "--target", url, "--report-dir", "", "--json", str(tmp_path / out), "-q", *more]
    )
    return code, json.loads((tmp_path / out).read_text())


def _start_at(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def _steps(doc: dict[str, Any]) -> dict[str, tuple[int, int, dict[str, int]]]:
    return {s["name"]: (s["count"], s["ok"], s["rc"]) for s in doc["steps"]}


def _hist_total(doc: dict[str, Any]) -> dict[str, int]:
    from runner.results.codec import decode_step

    return {s["name"]: decode_step(s).hdr().get_total_count() for s in doc["steps"]}


def test_three_shards_merge_to_one_runs_counts(tmp_path: Path, server_url: str, capsys: Any) -> None:
    """Shards 1/3, 2/3, 3/3 merged equal one run: iterations, step counts, rc counts, histogram totals."""
    path = _file(tmp_path)
    start = _start_at(0.3)
    shard_docs = []
    for k in (1, 2, 3):
        code, doc = _run(
            tmp_path, path, server_url, f"shard-{k}.json", "--shard", f"{k}/3", "--start-at", start
        )
        assert doc["settings"]["shard"]["index"] == k and doc["settings"]["shard"]["count"] == 3
        assert code == 1  # each shard alone has fewer than 21 reads: its own threshold is lost
        shard_docs.append(doc)
    assert [d["iterations"]["completed"] for d in shard_docs] == [
        9,
        6,
        6,
    ]  # 7 VUs: 3 + 2 + 2, 3 iterations each
    code, one = _run(tmp_path, path, server_url, "one.json")
    assert code == 0, one["error"]
    merged_path = tmp_path / "merged.json"
    shards = [str(tmp_path / f"shard-{k}.json") for k in (3, 1, 2)]  # any order
    code = main(["merge", *shards, "-o", str(merged_path), "--junit", str(tmp_path / "m.xml")])
    merged = json.loads(merged_path.read_text())
    assert code == 0, merged["error"]
    assert merged["iterations"] == one["iterations"] and merged["iterations"]["completed"] == 21
    assert _steps(merged) == _steps(one)
    assert _steps(merged)["no message"] == (21, 21, {"-2": 21})
    assert _hist_total(merged) == _hist_total(one)
    assert [t["passed"] for t in merged["thresholds"] if not t["default"]] == [True]
    assert sum(e["iterations"] for e in merged["timeseries"]) == 21
    # the generator's health of each shard is kept in the merge, per shard
    workers = merged["settings"]["load"]["generator"]["workers"]
    assert [w["name"] for w in workers] == ["shard 1", "shard 2", "shard 3"]
    assert all(w["seconds"] >= 1 and w["loop_lag_ms"] is not None for w in workers), workers
    assert (tmp_path / "m.xml").read_text().count("<testcase") == 1
    schema = json.loads(
        (Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json").read_text()
    )
    for doc in (merged, *shard_docs):
        Draft202012Validator(schema).validate(doc)


def test_merge_with_a_missing_shard_says_incomplete(tmp_path: Path, server_url: str, capsys: Any) -> None:
    """Merging shards 1/3 and 3/3 exits 1 and names shard 2 as missing."""
    path = _file(tmp_path)
    for k in (1, 3):
        _run(tmp_path, path, server_url, f"s{k}.json", "--shard", f"{k}/3")
    capsys.readouterr()
    code = main(
        ["merge", str(tmp_path / "s1.json"), str(tmp_path / "s3.json"), "-o", str(tmp_path / "m.json")]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "shard(s) 2 of 3 missing" in out and "INCOMPLETE" in out
    assert json.loads((tmp_path / "m.json").read_text())["settings"]["load"]["iterations_done"] == 15


def test_merge_refuses_shards_of_different_scenarios(tmp_path: Path, server_url: str, capsys: Any) -> None:
    """Shard reports of two different scenario files are refused with exit 2 and a clear message."""
    a = _file(tmp_path)
    b = _file(tmp_path, SCENARIO.replace("shard echo", "other echo"), "other.yaml")
    _run(tmp_path, a, server_url, "a.json", "--shard", "1/2")
    _run(tmp_path, b, server_url, "b.json", "--shard", "2/2")
    capsys.readouterr()
    code = main(["merge", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot merge" in err and "different scenario" in err and "other echo" in err


def test_bad_shard_argument_is_a_usage_error(tmp_path: Path, server_url: str, capsys: Any) -> None:
    """--shard 4/3 and --shard x exit 2 naming the expected form."""
    path = _file(tmp_path)
    for bad in ("4/3", "x", "0/2"):
        code = main(["run", str(path), "--target", server_url, "--report-dir", "", "--shard", bad])
        assert code == 2
        assert "expected K/N" in capsys.readouterr().err


def test_cluster_without_dask_says_how_to_install(
    tmp_path: Path, server_url: str, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--cluster without dask.distributed installed exits 3 with pip install 'wsload[cluster]'."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    path = _file(tmp_path)
    code = main(
        ["run", str(path), "--target", server_url, "--report-dir", "", "--cluster", "tcp://127.0.0.1:9"]
    )
    assert code == 3
    assert "pip install 'wsload[cluster]'" in capsys.readouterr().err


def test_open_model_shards_add_up_to_the_plans_starts(tmp_path: Path, server_url: str) -> None:
    """--rate 60 --iterations 30 in 3 shards: 10 starts each, 30 merged, achieved rate of the whole plan."""
    path = _file(tmp_path)
    start = _start_at(0.3)
    # The shards run one after the other here, so the later ones start their share late.
    open_args = (
        "--rate",
        "60",
        "--iterations",
        "30",
        "--start-at",
        start,
        "--threshold",
        "schedule_lag.p99 < 5s",
    )
    for k in (1, 2, 3):
        code, doc = _run(tmp_path, path, server_url, f"o{k}.json", "--shard", f"{k}/3", *open_args)
        assert doc["settings"]["load"]["started"] == 10, doc["error"]
    merged_path = tmp_path / "om.json"
    code = main(["merge", *(str(tmp_path / f"o{k}.json") for k in (1, 2, 3)), "-o", str(merged_path), "-q"])
    merged = json.loads(merged_path.read_text())
    assert code == 0, merged["error"]
    load = merged["settings"]["load"]
    assert load["model"] == "open" and load["started"] == 30 and merged["iterations"]["completed"] == 30
    assert 30 <= load["achieved_rate"] <= 75, load  # 30 starts over the plan's ~0.5 s at 60/s


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_waiting_for_start_at_ends_the_shard_at_once(
    tmp_path: Path, server_url: str, sig: signal.Signals
) -> None:
    """SIGTERM/SIGINT while a shard waits for a --start-at a minute away ends it at once (a
    Kubernetes delete would otherwise end in SIGKILL): exit 130, a JSON report marked interrupted
    with nothing measured."""
    path = _file(tmp_path)
    out = tmp_path / "shard.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--target", server_url, "--report-dir", "",
         "--json", str(out), "-q", "--shard", "1/2", "--start-at", _start_at(60)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()  # said once the signal handlers are in place
    assert line.startswith("wsload: shard 1/2 waits "), line
    sent = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=scaled(20))
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < scaled(5)
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["exit_code"] == 130
    assert all(step["count"] == 0 for step in doc["steps"])  # nothing was measured
    assert stdout.splitlines()[-1].startswith("INTERRUPTED shard echo")
