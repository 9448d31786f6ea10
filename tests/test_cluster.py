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
    assert read.count == result.iterations.started and read.failures == 0
