"""The S3 marginal memory of each tool in a run of the independent harness (``../shared/bench-peers``),
fitted two ways from the samples it keeps (``<results dir>/s3-<tool>-r<n>/samples.json``):

- as the harness fits it: client RSS over open connections, every sample with 20-100% of the
  target open (the ramp up, the hold and, for a tool that closes its connections slowly at the
  end, the ramp down as well);
- over the ramp up only: the same samples before the first one at the target.

A tool whose RSS still grows while its connections close (Artillery's V8 heap) gets a harness
slope that depends on how long its ramp down is sampled (1.8 to 7.0 KiB between repetitions of one
run); the ramp-up fit is the marginal cost of an added connection. Usage:

    python bench/s3_slope.py RESULTS_DIR [RESULTS_DIR ...]
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys

TARGET = 5000  # the harness's S3: 5,000 held connections


def fit(points: list[tuple[int, int]]) -> float | None:
    """Least-squares slope of RSS (bytes) over connections, in KiB per connection."""
    if len(points) < 4:
        return None
    mean_c = statistics.fmean(c for c, _ in points)
    mean_r = statistics.fmean(r for _, r in points)
    var = sum((c - mean_c) ** 2 for c, _ in points)
    if not var:
        return None
    return sum((c - mean_c) * (r - mean_r) for c, r in points) / var / 1024


def slopes(samples: list[dict[str, float | None]]) -> tuple[float | None, float | None, int, int]:
    """(harness slope, ramp-up slope, samples in each)."""
    low = 0.2 * TARGET
    every = [
        (int(s["conns"]), int(s["cli_rss"]))
        for s in samples
        if s.get("cli_rss") and s.get("conns") is not None and low <= (s["conns"] or 0) <= TARGET
    ]
    up = []
    for s in samples:
        conns = s.get("conns") or 0
        if conns >= TARGET:
            break
        if s.get("cli_rss") and conns >= low:
            up.append((int(conns), int(s["cli_rss"] or 0)))
    return fit(every), fit(up), len(every), len(up)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    print(f"{'run':28s} {'tool and repetition':24s} {'harness KiB':>11s} {'ramp-up KiB':>11s}  samples")
    for directory in argv:
        for path in sorted(glob.glob(os.path.join(directory, "s3-*", "samples.json"))):
            with open(path) as f:
                every, up, n_every, n_up = slopes(json.load(f))
            name = os.path.basename(os.path.dirname(path))[len("s3-") :]
            shown = [f"{v:11.2f}" if v is not None else f"{'-':>11s}" for v in (every, up)]
            run = os.path.basename(directory.rstrip("/"))
            print(f"{run:28s} {name:24s} {shown[0]} {shown[1]}  {n_every}/{n_up}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
