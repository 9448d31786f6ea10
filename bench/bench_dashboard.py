"""What the live dashboard costs: the round-trip scenario (bench/scenarios/roundtrip.yaml) run by
``wsload run`` three ways, alternating within each round, against an independent server (the Node
``ws`` echo server of tests/node/server.js, pinned to the last core):

- ``off``: no ``--dashboard``;
- ``on``: ``--dashboard`` with no browser on it (the server thread waits; no report is built);
- ``sse``: a plain reader of the page's event stream (urllib, in this process, on the server's
  core): every report is built and sent, nothing renders it, so this is wsload's own cost;
- ``watched``: ``--dashboard`` with headless Chromium on the page for the whole run (pinned to
  the server's core, so it does not take the client's).

wsload is pinned to the first core. Figures per variant (median of ``--rounds``): round trips per
wall second (reads that passed / the run's duration, from its JSON report) and client CPU per
round trip (the wsload process's user+system CPU from ``wait4``, all of it, set-up included,
divided by its round trips), and the read p99. ``python bench/bench_dashboard.py --rounds 3
--seconds 8``. Needs Chromium (``WSLOAD_CHROMIUM``, default /usr/bin/chromium) and Playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
NODE = REPO / "tests" / "node"
CHROMIUM = os.environ.get("WSLOAD_CHROMIUM", "/usr/bin/chromium")
ALLOWED = sorted(os.sched_getaffinity(0))
CLIENT_CORE, SERVER_CORE = ALLOWED[0], ALLOWED[-1]


def node_server() -> tuple[subprocess.Popen[str], str]:
    if not (NODE / "node_modules" / "ws").is_dir():
        subprocess.run(
            ["npm", "ci", "--prefix", str(NODE), "--silent", "--no-audit", "--no-fund"], check=True
        )
    proc = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CORE), "node", str(NODE / "server.js"), "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, f"ws://127.0.0.1:{int(line.split()[1])}/echo"


def watch(url: str, stop: threading.Event, seen: list[int]) -> None:
    """Headless Chromium on the page until ``stop`` (its updates counted into ``seen``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], env={**os.environ})
        pid_note = browser.new_page()
        pid_note.goto(url)
        while not stop.wait(0.5):
            seen[0] = int(pid_note.evaluate("() => +(document.body.dataset.updates || 0)"))
        browser.close()


def read_events(url: str, stop: threading.Event, seen: list[int]) -> None:
    """The event stream read as a browser would, without drawing it."""
    import urllib.request

    with urllib.request.urlopen(url + "events", timeout=30) as stream:
        while not stop.is_set():
            line = stream.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                seen[0] += 1


def one(variant: str, target: str, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="wsload-bench-dash-") as tmp:
        report = Path(tmp) / "r.json"
        cmd = [
            "taskset",
            "-c",
            str(CLIENT_CORE),
            sys.executable,
            "-m",
            "runner",
            "run",
            str(BENCH / "scenarios" / "roundtrip.yaml"),
            "--target",
            target,
            "--duration",
            f"{seconds}s",
            "--workers",
            "1",
            "--report-dir",
            "",
            "--json",
            str(report),
            "-q",
        ]
        if variant != "off":
            cmd += ["--dashboard", "127.0.0.1:0"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = [0]
        stop = threading.Event()
        watcher = None
        if variant != "off":
            assert proc.stderr is not None
            proc.stderr.readline()  # "wsload: live dashboard ...:", then the URL alone on its line
            line = proc.stderr.readline()
            found = re.search(r"(http://\S+)", line)
            assert found, line
            if variant in ("watched", "sse"):
                os.sched_setaffinity(
                    0, {SERVER_CORE}
                )  # the reader (Chromium inherits it) off the client's core
                reader = watch if variant == "watched" else read_events
                watcher = threading.Thread(target=reader, args=(found.group(1), stop, seen), daemon=True)
                watcher.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        stop.set()
        if watcher is not None:
            watcher.join(timeout=30)
        os.sched_setaffinity(0, set(ALLOWED))
        proc.stdout and proc.stdout.read()
        doc = json.loads(report.read_text())
    reads = next(s for s in doc["steps"] if s["kind"] == "read")
    rts = reads["ok"]
    return {
        "round_trips_per_s": rts / doc["duration_s"],
        "cpu_us_per_rt": (usage.ru_utime + usage.ru_stime) / max(rts, 1) * 1e6,
        "read_p99_ms": reads["latency_ms"]["p99"],
        "page_updates": float(seen[0]),
        "exit": float(os.waitstatus_to_exitcode(status)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server, target = node_server()
    variants = ("off", "on", "sse", "watched")
    rows: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    try:
        for r in range(args.rounds):
            for v in variants:
                row = one(v, target, args.seconds)
                rows[v].append(row)
                print(
                    f"round {r + 1} {v:8s} {row['round_trips_per_s']:9,.0f} rt/s  "
                    f"{row['cpu_us_per_rt']:6.2f} us CPU/rt  read p99 {row['read_p99_ms']:.2f} ms  "
                    f"page updates {row['page_updates']:.0f}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        server.kill()
    out: dict[str, Any] = {
        v: {k: round(statistics.median(x[k] for x in rows[v]), 3) for k in rows[v][0]} for v in variants
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        head = ("variant", "rt/s (median)", "us CPU/rt", "read p99 ms", "page updates")
        print(f"{head[0]:9s} {head[1]:>14s} {head[2]:>10s} {head[3]:>12s} {head[4]:>13s}")
        for v in variants:
            m = out[v]
            print(
                f"{v:9s} {m['round_trips_per_s']:14,.0f} {m['cpu_us_per_rt']:10.2f} {m['read_p99_ms']:12.2f}"
                f" {m['page_updates']:13.0f}"
            )


if __name__ == "__main__":
    main()
