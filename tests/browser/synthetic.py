"""A synthetic load-run result: users ramp up, latency breaks at 150 VUs, time-outs appear. Built
from real HDR histograms, with every time series the load engine records."""

from __future__ import annotations

import math
import random
from typing import Any

from runner.results.load_figures import GeneratorFigures, LoadSummary, SaturationBounds
from runner.results.recorders import LatencyHistogram
from runner.results.result import (
    ErrorGroup,
    IterationCounts,
    LatencySummary,
    RunResult,
    RunSettings,
    SecondSample,
    StepResult,
    ThresholdResult,
)
from runner.scenario.model import Stage

#: A step name and error text that would break the page if anything were not escaped.
HOSTILE = '</script><img src=x onerror="alert(1)"> & <!--'


def _step(
    name: str,
    kind: str,
    hist: LatencyHistogram,
    line: int,
    failures: int = 0,
    errors: tuple[ErrorGroup, ...] = (),
) -> StepResult:
    rc = {str(e.rc): e.count for e in errors}
    return StepResult(
        name,
        kind,
        "main",
        line,
        hist.count,
        hist.count - failures,
        failures,
        0,
        0,
        rc,
        LatencySummary.of(hist.summary()),
        errors,
        None,
        hist.serialize()["hdr"],
    )


def ramp(seconds: int, *, seed: int = 1, started_at: str = "2026-11-25T20:00:00.000Z") -> RunResult:
    """``seconds`` of a ramp to 200 virtual users over the first half, then holding."""
    rnd = random.Random(seed)
    read, opened = LatencyHistogram(), LatencyHistogram()
    series: list[dict[str, Any]] = []
    for t in range(seconds):
        vus = min(200, 1 + t * 200 // max(1, seconds // 2))
        base = 0.4 + max(0, vus - 150) * 0.05
        rc = {"-2": rnd.randint(1, 5)} if vus > 180 and t % 3 == 0 else {}
        latency = {
            "p50": base,
            "p90": base * 1.6,
            "p95": base * 2,
            "p99": base * 3,
            "p999": base * 5,
            "max": base * 8,
            "mean": base * 1.1,
            "min": base / 2,
        }
        series.append(
            {
                "t": t,
                "starts": vus,
                "steps": vus * 4,
                "messages": vus * 2,
                "failures": sum(rc.values()),
                "rc": rc,
                "latency_ms": latency,
                "vus": vus,
                "connections": vus,
                "paused": 0,
                "iterations": vus,
                # the generator: busy as the users grow, saturated past 180 of them
                "cpu": round(min(0.99, 0.2 + vus / 220), 3),
                "loop_lag_ms": round(0.3 + max(0, vus - 180) * 0.8, 3),
                "send_blocked": 0,
                "saturated": vus > 180,
            }
        )
        if vus > 190:
            series[-1]["dropped"] = t % 7
        for _ in range(5):
            read.record_ns(int(rnd.lognormvariate(math.log(base * 1e6), 0.5)))
    for _ in range(50):
        opened.record_ns(int(rnd.lognormvariate(math.log(2e6), 0.3)))
    timeouts = sum(sum(e["rc"].values()) for e in series)
    steps = (
        _step("open main", "open", opened, 9),
        _step(
            f"read {HOSTILE}",
            "read",
            read,
            14,
            timeouts,
            (ErrorGroup(-2, f"time-out: no message within 2s {HOSTILE}", timeouts),) if timeouts else (),
        ),
    )
    return RunResult(
        passed=False,
        interrupted=False,
        exit_code=1,
        scenario_name="synthetic ramp",
        scenario_file="scenarios/ramp.yaml",
        started_at=started_at,
        duration_s=float(seconds),
        target="ws://127.0.0.1:9",
        steps=steps,
        iterations=IterationCounts(
            started=sum(e["starts"] for e in series),
            completed=sum(e["starts"] for e in series) - timeouts,
            failed=timeouts,
        ),
        thresholds=(ThresholdResult("read.p99 < 5ms", 0.0091, False, 20, 0.005, "9.1ms is 4.1ms over 5ms"),),
        timeseries=tuple(SecondSample(**e) for e in series),
        settings=RunSettings(
            mode="load",
            read_timeout_s=2.0,
            load=LoadSummary(
                model="closed",
                workers=2,
                vus=200,
                vus_max_active=200,
                connections_max=200,
                achieved_rate=150.5,
                rate=None,
                lag_ms=None,
                iteration_ms={"p50": 1.2, "p99": 9.5},
                dropped=0,
                stages=(Stage(seconds / 2, 200),),
                generator=GeneratorFigures(
                    workers=(),
                    seconds=seconds,
                    saturated_seconds=sum(1 for e in series if e["saturated"]),
                    samples_in_saturated=0.1,
                    cpu_max=0.99,
                    loop_lag_ms=None,
                    saturated_when=SaturationBounds(cpu=0.9, loop_lag_ms=10.0),
                ),
                stop_reason="",
            ),
        ),
    )
