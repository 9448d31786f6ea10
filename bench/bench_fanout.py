"""Fan-out delivery latency (issue 16, "Measure"): wsload's measured publish-to-delivery p50/p99
against an independent measurement of the same messages at the same time.

The broadcast server is the Node ``ws`` room of ``tests/node/server.js`` (every message to every
member; not ours), pinned to the last core. wsload runs ``--subscribers`` users, pinned to the
first core, each joining the room during a ramp and reading ``--count`` messages with
``latency_from: {json: sent_at, unit: us}``. ``bench/fanout_ref.js`` (Node, unpinned) joins
``--ref`` reference subscribers spread over the same ramp (so they sit at spread places in the
server's send order), then publishes ``--count`` messages at ``--rate`` a second, each stamped
with its send time in microseconds; its subscribers time each message by the same wall clock.

Both measure stamp to arrival; they differ by what each client adds before it looks at the clock
(wsload: its parse and its queue when its core is busy). The comparison holds when the difference
is within 10% or 0.2 ms (the issue's bound). wsload's generator figures are printed beside it: a
saturated generator measures its own queue, and says so.

    python bench/bench_fanout.py                                   # 1,000 x 20/s for 10 s
    python bench/bench_fanout.py --subscribers 5000 --rate 100 --count 1000   # the issue's shape

Every connection goes to 127.0.0.1; every wait is bounded (the reference gives up after 5 min).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import REPO, cores, machine

SCENARIO = """\
name: fan-out bench
connections:
  room: {{url: "{url}", timeout: 10s}}
steps:
  - open: room
{reads}
  - close: room
load: {{vus: {subscribers}, iterations: 1, ramp_up: {ramp}s}}
"""
#: ``--step read``: one read step per message; ``receive``: one streaming step takes them all.
READS = {
    "read": """  - repeat:
      times: {count}
      steps:
        - name: delivery
          read:
            connection: room
            timeout: 15s
            latency_from: {{json: sent_at, unit: us}}""",
    "receive": """  - name: delivery
    receive:
      connection: room
      count: {count}
      timeout: 120s
      latency_from: {{json: sent_at, unit: us}}""",
}


def _node_server(core: int) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        ["taskset", "-c", str(core), "node", os.path.join(REPO, "tests", "node", "server.js"), "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith("PORT"):
        server.kill()
        raise SystemExit("the Node ws server did not start (run: npm ci --prefix tests/node)")
    return server, int(line.split()[1])


def run(args: argparse.Namespace) -> dict[str, object]:
    client_core, server_core = cores()
    server, port = _node_server(server_core)
    url = f"ws://127.0.0.1:{port}/room/bench{os.getpid()}"
    try:
        with tempfile.TemporaryDirectory(prefix="wsload-fanout-") as tmp:
            scenario = Path(tmp) / "fanout.yaml"
            reads = READS[args.step].format(count=args.count)
            scenario.write_text(
                SCENARIO.format(url=url, reads=reads, subscribers=args.subscribers, ramp=args.ramp)
            )
            report = Path(tmp) / "fanout.json"
            wsload = subprocess.Popen(
                [
                    *(
                        "taskset",
                        "-c",
                        str(client_core),
                        sys.executable,
                        "-m",
                        "runner",
                        "run",
                        str(scenario),
                    ),
                    *("--json", str(report), "--report-dir", "", "-q"),
                ],
                cwd=REPO,
            )
            # The publisher starts once wsload's ramp is done and its users have had time to join.
            start_ms = int((args.ramp + args.settle) * 1000)
            ref = subprocess.run(
                [
                    *("node", os.path.join(REPO, "bench", "fanout_ref.js"), url, str(args.ref)),
                    *(str(int(args.ramp * 1000)), str(start_ms), str(args.rate), str(args.count)),
                ],
                capture_output=True,
                text=True,
                timeout=360,
            )
            wsload.wait(timeout=args.count / args.rate + args.ramp + args.settle + 120)
            doc = json.loads(report.read_text())
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=10)
    if ref.returncode != 0 or not ref.stdout.strip():
        raise SystemExit(f"the reference client failed: {ref.stderr.strip()[-500:]}")
    reference = json.loads(ref.stdout.strip().splitlines()[-1])
    step = next(s for s in doc["steps"] if s["name"] == "delivery")
    deliveries = step["received"] if args.step == "receive" else step["count"]
    delivery = step.get("delivery_ms") or {}
    generator = ((doc.get("settings") or {}).get("load") or {}).get("generator") or {}
    return {
        "shape": {
            "subscribers": args.subscribers,
            "rate_per_s": args.rate,
            "messages": args.count,
            "reference_subscribers": args.ref,
            "step": args.step,
        },
        "wsload": {
            "deliveries": deliveries,
            "expected": args.subscribers * args.count,
            "failures": step["failures"],
            "p50_ms": delivery.get("p50"),
            "p99_ms": delivery.get("p99"),
            "max_ms": delivery.get("max"),
            "passed": doc["passed"],
            "generator_cpu_max": generator.get("cpu_max"),
            "generator_saturated_share": generator.get("saturated_share"),
            "loop_lag_p99_ms": (generator.get("loop_lag_ms") or {}).get("p99"),
        },
        "reference": reference,
        "machine": machine(),
    }


def _within(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "no data"
    diff = abs(a - b)
    ok = diff <= 0.2 or diff <= 0.1 * b
    return f"{'within' if ok else 'NOT within'} 10% or 0.2 ms (difference {diff:.3f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000, help="wsload's subscribers (default 1000)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages published a second (default 20)")
    parser.add_argument("--count", type=int, default=200, help="messages published (default 200)")
    parser.add_argument("--ref", type=int, default=50, help="reference subscribers (default 50)")
    parser.add_argument("--ramp", type=float, default=3.0, help="wsload's ramp-up, seconds (default 3)")
    parser.add_argument("--settle", type=float, default=2.0, help="wait after the ramp, seconds (default 2)")
    parser.add_argument(
        "--step",
        choices=sorted(READS),
        default="receive",
        help="how wsload reads: a read per message, or one receive",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    w, r = out["wsload"], out["reference"]
    assert isinstance(w, dict) and isinstance(r, dict)
    print(
        f"fan-out ({args.step}): {args.subscribers} wsload subscribers + {args.ref} reference, "
        f"{args.count} messages "
        f"at {args.rate:g}/s, Node ws room ({started})"
    )
    print(
        f"  wsload     deliveries {w['deliveries']:,} of {w['expected']:,}, failures {w['failures']}, "
        f"p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms, max {w['max_ms']} ms"
    )
    print(
        f"             generator: CPU up to {w['generator_cpu_max']}, saturated share "
        f"{w['generator_saturated_share']}, loop lag p99 {w['loop_lag_p99_ms']} ms; run passed: {w['passed']}"
    )
    print(
        f"  reference  deliveries {r['samples']:,}, p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
        f"max {r['max_ms']:.3f} ms; reach {r['reach_min']}..{r['reach_max']} of its {args.ref}"
    )
    print(f"  p50: {_within(w['p50_ms'], r['p50_ms'])}")
    print(f"  p99: {_within(w['p99_ms'], r['p99_ms'])}")


if __name__ == "__main__":
    main()
