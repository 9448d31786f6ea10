"""Connections and round trips per second: a 2-worker Dask LocalCluster (``wsload run --cluster``)
against a local 2-process run (``wsload run --workers 2``) of the same scenario.

    python bench/bench_cluster.py                  # ~20 s each, 1 round
    python bench/bench_cluster.py --seconds 10 --rounds 3 --json

Both go through the command line, exactly as a user runs them, against one picows echo server
pinned to the last core (``_harness.EchoServers``). The clients are *not* pinned: each has two
processes (two Dask workers, or two wsload workers) sharing the two cores with the server, so the
figures compare the two coordinations on equal terms; they are not per-core maxima. Each
iteration opens a connection, does ``--round-trips`` write/read round trips, and closes it, so
both opens/s and round trips/s are exercised. Figures come from the JSON reports: opens and reads
counted by the engine over the run's duration (ramp and graceful end included), read p99.
The Dask cluster's start-up (about a second) is outside the measurement; the cluster run's
3 s shared-start delay is not counted (the report's duration starts at the shared start).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _harness import EchoServers, ServerMeter, common_args, emit, machine, median_rows, say

SCENARIO = """\
name: bench cluster
connections:
  main: {{url: /, timeout: 10s}}
steps:
  - open: main
  - repeat:
      times: {round_trips}
      steps:
        - write: {{connection: main, text: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"}}
        - read: main
  - close: main
load:
  vus: {vus}
  duration: {seconds}s
  graceful_stop: 2s
"""


def _wsload(args: list[str], env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "runner", "run", *args]
    subprocess.run(cmd, check=False, env=env, stdout=subprocess.DEVNULL)


def _figures(report: str) -> dict[str, float]:
    with open(report) as f:
        doc: dict[str, Any] = json.load(f)
    steps = {s["kind"]: s for s in doc["steps"] if s["kind"] in ("open", "read")}
    duration = doc["duration_s"]
    read = steps["read"]
    return {
        "opens_per_s": round(steps["open"]["ok"] / duration),
        "round_trips_per_s": round(read["ok"] / duration),
        "read_p99_ms": (read["latency_ms"] or {}).get("p99", 0.0),
        "failures": sum(s["failures"] for s in doc["steps"]),
        "duration_s": duration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common_args(parser, seconds=20.0, rounds=1)
    parser.add_argument("--vus", type=int, default=100, help="virtual users in all (default 100)")
    parser.add_argument("--round-trips", type=int, default=20, help="round trips per connection (default 20)")
    args = parser.parse_args()
    from distributed import LocalCluster

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the Dask worker processes import runner too
    rows: dict[str, list[dict[str, float]]] = {"local 2 processes": [], "dask 2 workers": []}
    with tempfile.TemporaryDirectory() as tmp, EchoServers(impl="picows") as server:
        target = server.url.rstrip("/")
        path = os.path.join(tmp, "bench.yaml")
        with open(path, "w") as f:
            f.write(SCENARIO.format(round_trips=args.round_trips, vus=args.vus, seconds=args.seconds))
        base = [path, "--target", target, "--report-dir", "", "-q"]
        with LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            for r in range(args.rounds):
                for name in rows:
                    out = os.path.join(tmp, f"{r}-{len(rows[name])}-{name.split()[0]}.json")
                    more = (
                        ["--workers", "2"]
                        if name.startswith("local")
                        else ["--cluster", cluster.scheduler_address]
                    )
                    meter = ServerMeter(server)
                    t0 = time.perf_counter()
                    _wsload([*base, "--json", out, *more], env)
                    wall = time.perf_counter() - t0
                    fig = _figures(out)
                    fig["server_cpu_pct"] = round(meter.share() * 100, 1)
                    fig["wall_s"] = round(wall, 1)
                    rows[name].append(fig)
                    say(
                        args,
                        f"round {r + 1} {name:18s} opens/s {fig['opens_per_s']:>7,.0f}  round trips/s "
                        f"{fig['round_trips_per_s']:>8,.0f}  read p99 {fig['read_p99_ms']:.2f} ms  "
                        f"failures {fig['failures']:.0f}  server {fig['server_cpu_pct']}%  "
                        f"(run {fig['duration_s']:.1f}s, wall {wall:.1f}s)",
                    )
    med = {name: median_rows(r) for name, r in rows.items()}
    local, dask = med["local 2 processes"], med["dask 2 workers"]
    say(args, "")
    say(args, f"{'':20s} {'opens/s':>10s} {'round trips/s':>15s} {'read p99 ms':>12s}")
    for name, m in med.items():
        say(
            args,
            f"{name:20s} {m['opens_per_s']:>10,.0f} {m['round_trips_per_s']:>15,.0f} "
            f"{m['read_p99_ms']:>12.2f}",
        )
    say(
        args,
        f"dask / local: opens {dask['opens_per_s'] / max(local['opens_per_s'], 1):.2f}x, "
        f"round trips {dask['round_trips_per_s'] / max(local['round_trips_per_s'], 1):.2f}x",
    )
    emit(
        args,
        {
            "machine": machine(),
            "vus": args.vus,
            "round_trips": args.round_trips,
            "median": med,
            "rounds": rows,
        },
    )


if __name__ == "__main__":
    main()
