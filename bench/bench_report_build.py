"""How long the report of a long run takes to build: what the live dashboard pays each time it
shows a run (and what the end of a run pays once).

A synthetic recorder: ``--steps`` read steps (each with a latency histogram of ``--samples``
log-normal samples around 1 ms) and ``--seconds`` seconds of time series (each second with reads
in its latency histogram, compacted as a run compacts them), then the time of
``build_result`` (the run's result: step summaries and one sample per second) and of
``report_parts`` (the HTML body and the charts' data, at the live page's 600 points a series),
first and again (the second build is the dashboard's steady state: summaries of seconds that no
longer change are kept). ``python bench/bench_report_build.py --steps 50 --seconds 3600``.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from runner.dashboard.server import LIVE_POINTS
from runner.reports.html import report_parts
from runner.reports.masking import Masker
from runner.results.recorders import RunRecorder
from runner.results.result import build_result


def recorder(steps: int, seconds: int, samples: int, per_second: int) -> RunRecorder:
    rng = random.Random(7)
    rec = RunRecorder(0)
    for i in range(steps):
        step = rec.step(f"read {i}", "read", "main", i + 1)
        for _ in range(samples):
            step.record_ok(int(rng.lognormvariate(13.8, 0.5)))  # ~1 ms in ns
    series = rec.timeseries
    for t in range(seconds):
        for _ in range(per_second):
            series.step_ok(t, int(rng.lognormvariate(13.8, 0.5)), True)
        series.gauges(t, 100, 100)
    return rec


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--samples", type=int, default=20_000, help="latency samples per step")
    parser.add_argument("--per-second", type=int, default=200, help="read samples in each second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    rec = recorder(args.steps, args.seconds, args.samples, args.per_second)
    made_s = time.perf_counter() - t0
    figures: dict[str, float] = {}
    for build in ("first", "again"):
        t0 = time.perf_counter()
        result = build_result(
            rec,
            scenario_name="bench",
            scenario_file="bench.yaml",
            started_at="",
            duration_s=args.seconds,
            target="",
        )
        t1 = time.perf_counter()
        parts = report_parts(result, Masker(), max_points=LIVE_POINTS)
        t2 = time.perf_counter()
        figures[f"{build}_build_result_ms"] = round((t1 - t0) * 1000, 1)
        figures[f"{build}_report_parts_ms"] = round((t2 - t1) * 1000, 1)
        figures["payload_kb"] = round(len(json.dumps(parts)) / 1000, 1)
    out = {"steps": args.steps, "seconds": args.seconds, "recorder_made_s": round(made_s, 1), **figures}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        f = figures
        print(
            f"{args.steps} steps, {args.seconds} s: build_result {f['first_build_result_ms']} ms first, "
            f"{f['again_build_result_ms']} ms again; report_parts {f['first_report_parts_ms']} ms first, "
            f"{f['again_report_parts_ms']} ms again; payload {f['payload_kb']} kB"
        )


if __name__ == "__main__":
    main()
