"""Scaling over worker processes: the round-trip scenario (bench/scenarios/roundtrip.yaml) run by
``wsload run --workers N`` for each N of ``--workers`` (default 1,2), alternating within each
round, against an independent server (the Node ``ws`` echo server of tests/node/server.js).

On this machine (2 cores) no layout gives each worker a core *and* the server one, so nothing is
pinned and the machine's share is stated instead: per variant, round trips per wall second (reads
that passed / the run's duration, from its JSON report), the CPU of the whole wsload process tree
per round trip (parent and workers, from ``RUSAGE_CHILDREN``), the parent's own CPU in % of a
core (with workers it only coordinates: it merges the workers' deltas and runs the monitor once
a second, so that share divided by the workers is the per-worker cost of the merge and the
monitor), the server's CPU in % of a core, and the read p99. With 1 worker the run measures in the
parent itself (no coordinator): its parent share is the whole client.

    python bench/bench_scaling.py                         # 3 rounds x 8 s per variant
    python bench/bench_scaling.py --workers 1,2,3 --rounds 2 --seconds 10 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
NODE = REPO / "tests" / "node"
TICK = os.sysconf("SC_CLK_TCK")


def node_server() -> tuple[subprocess.Popen[str], str]:
    if not (NODE / "node_modules" / "ws").is_dir():
        subprocess.run(
            ["npm", "ci", "--prefix", str(NODE), "--silent", "--no-audit", "--no-fund"], check=True
        )
    proc = subprocess.Popen(
        ["node", str(NODE / "server.js"), "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, f"ws://127.0.0.1:{int(line.split()[1])}/echo"


def own_cpu_s(pid: int) -> float | None:
    """A process's own user+system CPU seconds (not its children's), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def one(workers: int, target: str, seconds: float, server_pid: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="wsload-bench-scaling-") as tmp:
        report = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "runner", "run", str(BENCH / "scenarios" / "roundtrip.yaml")]
        cmd += ["--target", target, "--duration", f"{seconds}s", "--workers", str(workers)]
        cmd += ["--report-dir", "", "--json", str(report), "-q"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = own_cpu_s(server_pid) or 0.0
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        parent = 0.0
        deadline = started + seconds + 120
        while proc.poll() is None and time.monotonic() < deadline:  # bounded: the run's length + 2 min
            parent = own_cpu_s(proc.pid) or parent
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = (own_cpu_s(server_pid) or 0.0) - server_before
        doc = json.loads(report.read_text())
    reads = next(s for s in doc["steps"] if s["kind"] == "read")
    rts = reads["ok"]
    tree = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run_s = doc["duration_s"]
    return {
        "round_trips_per_s": rts / run_s,
        "tree_cpu_us_per_rt": tree / max(rts, 1) * 1e6,
        "tree_cpu_pct": 100 * tree / run_s,
        "parent_cpu_pct": 100 * parent / run_s,
        "server_cpu_pct": 100 * server_cpu / run_s,
        "read_p99_ms": reads["latency_ms"]["p99"],
        "generator_saturated_s": float(doc.get("generator", {}).get("saturated_seconds", 0) or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    server, target = node_server()
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    try:
        for r in range(args.rounds):
            for n in counts if r % 2 == 0 else counts[::-1]:  # alternate the order
                row = one(n, target, args.seconds, server.pid)
                rows[n].append(row)
                print(
                    f"round {r + 1} workers={n}: {row['round_trips_per_s']:9,.0f} rt/s  "
                    f"{row['tree_cpu_us_per_rt']:6.2f} us CPU/rt (tree {row['tree_cpu_pct']:.0f}%, "
                    f"parent {row['parent_cpu_pct']:.1f}%)  server {row['server_cpu_pct']:.0f}%  "
                    f"read p99 {row['read_p99_ms']:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        server.kill()
        server.wait()
    out: dict[str, Any] = {
        str(n): {k: round(statistics.median(x[k] for x in rows[n]), 3) for k in rows[n][0]} for n in counts
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    head = ("workers", "rt/s", "us CPU/rt", "tree %", "parent %", "server %", "p99 ms")
    print("{:>7s} {:>10s} {:>10s} {:>7s} {:>9s} {:>9s} {:>7s}".format(*head))
    for n in counts:
        m = out[str(n)]
        print(
            f"{n:7d} {m['round_trips_per_s']:10,.0f} {m['tree_cpu_us_per_rt']:10.2f} {m['tree_cpu_pct']:7.0f}"
            f" {m['parent_cpu_pct']:9.1f} {m['server_cpu_pct']:9.0f} {m['read_p99_ms']:7.2f}"
        )


if __name__ == "__main__":
    main()
