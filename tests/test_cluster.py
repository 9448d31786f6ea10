"""``wsload run --cluster``: a Dask LocalCluster of worker processes on 127.0.0.1 runs the load."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import scaled
from distributed import Client, LocalCluster

from runner.cli import main
from runner.cluster.dask_runner import StopFlag, run_on_cluster
from runner.load.settings import LoadOverrides
from runner.results.codec import encode
from runner.results.result import RunResult
from runner.server import EmbeddedServer

SCENARIO = """\
name: cluster echo
target: embedded
connections:
  main: {url: /echo, timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: "hi {{ vu }}"}
  - read: main
    expect: {text: "hi {{ vu }}"}
  - close: main
load:
  vus: 5
  iterations: 4
"""

# Long enough to kill a worker in the middle: 2 users per shard, one iteration every ~50 ms for 6 s.
LONG = """\
name: cluster long
target: embedded
connections:
  main: {url: /echo, timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: hi}
  - read: main
  - sleep: 50ms
  - close: main
load:
  vus: 4
  duration: 6s
  graceful_stop: 1s
"""


def _cluster() -> LocalCluster:
    return LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = EmbeddedServer(host="127.0.0.1", port=0).run_in_thread()
    try:
        yield server.url
    finally:
        server.stop_thread()


def _steps(doc: dict[str, Any]) -> dict[str, tuple[int, int, dict[str, int]]]:
    return {s["name"]: (s["count"], s["ok"], s["rc"]) for s in doc["steps"]}


def test_cluster_run_gives_the_same_totals_as_a_local_run(tmp_path: Path, server_url: str) -> None:
    """wsload run --cluster on a 2-worker LocalCluster: same iterations and step/rc counts as a local run."""
    path = tmp_path / "echo.yaml"
    path.write_text(SCENARIO)
    base = ["run", str(path), "--target", server_url, "--report-dir", "", "-q"]
    assert main([*base, "--json", str(tmp_path / "local.json")]) == 0
    with _cluster() as cluster:
        code = main([*base, "--json", str(tmp_path / "cluster.json"), "--cluster", cluster.scheduler_address])
    local = json.loads((tmp_path / "local.json").read_text())
    dist = json.loads((tmp_path / "cluster.json").read_text())
    assert code == 0, dist["error"]
    assert dist["iterations"]["completed"] == local["iterations"]["completed"] == 20
    assert _steps(dist) == _steps(local)
    assert dist["settings"]["load"]["shards_merged"] == [1, 2]
    assert sum(e["iterations"] for e in dist["timeseries"]) == 20


def test_a_worker_killed_mid_run_is_reported(tmp_path: Path, server_url: str) -> None:
    """One Dask worker killed mid-run: the run is incomplete, names the lost shard, keeps its data."""
    path = tmp_path / "long.yaml"
    path.write_text(LONG)
    done: list[RunResult] = []
    with _cluster() as cluster, Client(cluster.scheduler_address, set_as_default=False) as client:
        pids = client.run(os.getpid)
        stop = StopFlag()
        # An explicit shared start, so the kill lands mid-run however long the set-up takes here.
        start_unix_ns = time.time_ns() + int(scaled(4) * 1e9)
        runner = threading.Thread(
            target=lambda: done.append(
                run_on_cluster(
                    str(path),
                    {},
                    server_url,
                    LoadOverrides(),
                    cluster.scheduler_address,
                    stop=stop,
                    start_unix_ns=start_unix_ns,
                )
            ),
            daemon=True,
        )
        runner.start()
        time.sleep(max(0.0, (start_unix_ns - time.time_ns()) / 1e9) + 2.5)  # 2.5 s into the load
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        runner.join(scaled(40))
    assert not runner.is_alive() and done
    result = done[0]
    load = encode(result)["settings"]["load"]
    lost = [w for w in load["incomplete_workers"] if "(lost)" in w]
    assert len(lost) == 1, load["incomplete_workers"]
    assert not result.passed and "lost mid-run" in result.error
    # "lost on HOST pid N": the lost shard had streamed progress, which the merge keeps
    assert f"pid {victim}" in result.error
    read = next(s for s in result.steps if s.name == "read main")
    # The lost shard's last streamed second may land between an iteration's start and its read
    # (CI on 825e281: 299 started, 298 reads, 297 completed): every completed iteration's read is
    # counted, and no more reads than iterations started.
    assert result.iterations.completed <= read.count <= result.iterations.started, result.iterations
    assert read.count > 0 and read.failures == 0


def test_the_dashboard_shows_the_clusters_merged_run_live(tmp_path: Path, server_url: str) -> None:
    """``--cluster`` with a live view: the client's merged view of the shards reaches the page
    each second while they run (their steps counted, the seconds growing), then the final one."""
    import urllib.request

    from runner.dashboard import Dashboard
    from runner.reports.masking import Masker

    path = tmp_path / "long.yaml"
    path.write_text(LONG)
    dashboard = Dashboard("127.0.0.1", 0, token=None, masker=Masker())
    url = dashboard.start()
    seen: list[dict[str, Any]] = []

    def read() -> None:
        with urllib.request.urlopen(url + "events", timeout=scaled(60)) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["final"]:
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with _cluster() as cluster:
        result = run_on_cluster(
            str(path), {}, server_url, LoadOverrides(), cluster.scheduler_address, live_view=dashboard
        )
    dashboard.final(result)
    reader.join(timeout=scaled(10))
    live = [m for m in seen if not m["final"]]
    assert len(live) >= 2, [m["second"] for m in seen]
    assert live[-1]["second"] > live[0]["second"]
    assert "open main" in live[-1]["body"] and live[-1]["data"]["charts"]
    assert seen[-1]["final"] and seen[-1]["verdict"] == "PASS" and "<html" in seen[-1]["html"]
    dashboard.close()
