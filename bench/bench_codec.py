"""The JSON report's codec on a big run: how long writing and reading its document takes.

A synthetic hour-long load run (``--steps`` steps with HDR histograms, ``--seconds`` per-second
samples with read latencies, gauges and two workers' health, a full ``settings.load``) is frozen
with ``build_result`` and then, ``--repeat`` times each, in milliseconds per call:

- ``build``: ``build_result`` (freezing the recorder, the per-second samples included; decoding
  each second's histogram makes it seconds long, so it runs ``--build-repeat`` times);
- ``encode``: ``json_report.document`` (the result to the report's document);
- ``render``: ``json_report.render`` (the document and its JSON text: what a run writes);
- ``decode``: the document read back into a result (what ``wsload report`` and ``merge`` do).

Each figure is the median of the repeats. The script runs against whichever ``runner`` sits beside
its ``bench/`` folder, so an older tree's copy of it measures that tree's code (before the codec
it reads with ``RunResult.from_json``); alternate the two for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

#: ``settings.load`` of a real two-worker run (wsload run scenarios/load.yaml), as written.
_LAT = {"p50": 0.061, "p90": 0.547, "p95": 1.213, "p99": 21.023, "p999": 71.423, "max": 102.461}
LOAD: dict[str, Any] = {
    "model": "closed",
    "vus": 200,
    "max_vus": None,
    "planned_duration_s": 3600.0,
    "iterations_per_vu": None,
    "iterations_done": 700_000,
    "rate": None,
    "achieved_rate": 194.4,
    "started": 700_200,
    "dropped": 0,
    "lag_ms": None,
    "iteration_ms": {**_LAT, "mean": 0.985, "min": 0.027},
    "failure_pauses": 0,
    "failure_pause_s": 0.0,
    "failure_pause": {"first_s": 0.05, "max_s": 1.0},
    "graceful_stop_s": 2.0,
    "think_time_s": 0.0,
    "pace_s": None,
    "ramp_up_s": 60.0,
    "hold": False,
    "stages": [],
    "plan": {
        "model": "closed",
        "window_s": 3600.0,
        "planned": 714000.0,
        "made": 714000.0,
        "dropped_starts": 0,
        "delivered": 1.0,
        "dropped": None,
    },
    "generator": {
        "workers": [
            {
                "name": str(w),
                "seconds": 3600,
                "cpu_mean": 0.41,
                "cpu_max": 0.72,
                "loop_lag_ms": {**_LAT, "mean": 0.985, "min": 0.027},
                "saturated_seconds": 0,
                "send_blocked_max": 0,
            }
            for w in (1, 2)
        ],
        "seconds": 3600,
        "saturated_seconds": 0,
        "saturated_share": 0.0,
        "samples_in_saturated": 0.0,
        "cpu_max": 0.72,
        "loop_lag_ms": {**_LAT, "mean": 0.985, "min": 0.027},
        "saturated_when": {"cpu": 0.9, "loop_lag_ms": 10.0},
    },
    "workers": 2,
    "workers_reason": "as asked (--workers / load.workers)",
    "vus_max_active": 200,
    "connections_max": 200,
    "source_addresses": [],
    "nofile": 20000,
    "incomplete_workers": [],
    "stop_reason": "",
}


def _recorder(steps: int, seconds: int, per_second: int) -> Any:
    from runner.results.recorders import RunRecorder

    rnd = random.Random(1)
    rec = RunRecorder(0)
    recs = [rec.step(f"step {i}", "read" if i % 2 else "write", "main", 10 + i) for i in range(steps)]
    for t in range(seconds):
        rec.timeseries.gauges(t, 200, 200)
        for _ in range(per_second):
            ns = int(rnd.lognormvariate(14.0, 0.6))
            step = recs[rnd.randrange(steps)]
            step.record(ok=True, rc=0, rc_is_success=True, latency_ns=ns)
            rec.timeseries.step(t, True, None, ns, message=True)
        if t % 97 == 0:
            recs[0].record(ok=False, rc=-2, rc_is_success=False, latency_ns=None, error="time-out")
            rec.timeseries.step(t, False, -2, None)
        rec.timeseries.start(t)
        rec.timeseries.ended(t)
        for w in ("1", "2"):
            rec.health.worker(w).seconds[t] = (0.4, 900_000, 0, False)
    rec.iterations_started = rec.iterations_completed = seconds
    return rec


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200, help="steps in the scenario")
    parser.add_argument("--seconds", type=int, default=3600, help="seconds of the run")
    parser.add_argument("--per-second", type=int, default=20, help="read latencies recorded per second")
    parser.add_argument("--repeat", type=int, default=7, help="calls of each operation; the median is shown")
    parser.add_argument("--build-repeat", type=int, default=1, help="calls of build_result")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    import runner
    from runner.reports import json_report
    from runner.results.result import build_result

    try:
        from runner.results.codec import decode

        code = "codec"
    except ImportError:  # a tree from before the codec
        from runner.results.result import RunResult

        decode = RunResult.from_json
        code = "RunResult.to_json/from_json"

    rec = _recorder(args.steps, args.seconds, args.per_second)

    def build() -> Any:
        return build_result(
            rec,
            scenario_name="bench codec",
            scenario_file="bench.yaml",
            started_at="2026-11-25T00:00:00.000Z",
            duration_s=args.seconds + 0.5,
            target="ws://127.0.0.1:9",
        )

    doc = json_report.document(build())
    doc["settings"] = {"mode": "load", "read_timeout_s": 2.0, "load": LOAD}
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    result = decode(json.loads(text))
    assert json_report.render(result) == text, "the codec does not give back the same text"
    loaded = json.loads(text)
    figures = {
        "code": code,
        "runner": os.path.dirname(runner.__file__),
        "steps": args.steps,
        "seconds": args.seconds,
        "report_bytes": len(text.encode()),
        "build_ms": round(_median_ms(build, args.build_repeat), 2),
        "encode_ms": round(_median_ms(lambda: json_report.document(result), args.repeat), 2),
        "render_ms": round(_median_ms(lambda: json_report.render(result), args.repeat), 2),
        "decode_ms": round(_median_ms(lambda: decode(loaded), args.repeat), 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>13}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
