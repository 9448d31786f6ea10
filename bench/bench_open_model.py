"""Row 5: the open model at half the tool's own maximum rate, about 1,000 connections open.

1. The maximum: the scenario bench/scenarios/open_model.yaml without its sleep (open, one 64-byte
   JSON round trip matched by sequence number, close) in a closed loop of ``--max-vus-probe``
   users, for ``--seconds``: iterations per second is the most this client core sustains.
2. The open run: ``rate`` = half that maximum, the sleep set to 1,000 / rate seconds so that about
   1,000 connections are open at once, ``max_vus`` 1,500, for ``--seconds`` (x2).

Both through the load engine (``runner.load.run.run_load``, one worker, in this process pinned to
the first core; picows echo on the other). Figures: achieved rate vs target (goal within 1%),
the engine's schedule lag p99 (goal <= 1 ms), starts dropped, and Little's law: the mean number of
open connections (sampled every 20 ms from the engine's clients) against achieved rate x mean
iteration time, both as the engine reports them (iteration time from the *intended* start).

    python bench/bench_open_model.py                  # about 30 s
    python bench/bench_open_model.py --seconds 20 --json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h

SCENARIO = os.path.join(h.BENCH_DIR, "scenarios", "open_model.yaml")
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "1000"))


def _scenario(url: str, sleep_s: float | None) -> Any:
    from runner.loader import load_scenario_text

    with open(SCENARIO) as f:
        text = f.read()
    if sleep_s is None:
        text = re.sub(r"\n  - sleep: .*", "", text)
    else:
        text = re.sub(r"(\n  - sleep: ).*", rf"\g<1>{sleep_s * 1000:.3f}ms", text)
    return load_scenario_text(text, SCENARIO, target=url.rstrip("/"), base_dir=h.BENCH_DIR)


async def _run(url: str, sleep_s: float | None, overrides: Any) -> tuple[Any, dict[str, float]]:
    """run_load with a sampler of open connections (from the engine's own clients)."""
    from runner.client import WebSocketClient
    from runner.load.run import run_load

    clients: list[WebSocketClient] = []

    def factory() -> WebSocketClient:
        client = WebSocketClient()
        clients.append(client)
        return client

    samples: list[int] = []
    stalls: list[float] = []  # how late the sampler's own 20 ms sleeps wake: event-loop stalls

    async def sample() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.02)
            stalls.append(time.perf_counter() - t - 0.02)
            samples.append(sum(c.open_sockets for c in clients))

    sampler = asyncio.ensure_future(sample())
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        result = await run_load(
            _scenario(url, sleep_s),
            target=url.rstrip("/"),
            overrides=overrides,
            workers=1,
            handle_signals=False,
            client_factory=factory,
        )
    finally:
        sampler.cancel()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    stalls.sort()
    # the steady part: drop the first and last 10% of the samples (ramp-in, draining)
    k = len(samples) // 10
    steady = samples[k : len(samples) - k] or samples
    return result, {
        "cpu": cpu,
        "wall": wall,
        "mean_open_connections": sum(steady) / max(1, len(steady)),
        "max_open_connections": max(samples or [0]),
        "loop_stall_p99_ms": stalls[int(len(stalls) * 0.99)] * 1000 if stalls else 0.0,
        "loop_stall_max_ms": stalls[-1] * 1000 if stalls else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="probe time; the open run is twice this")
    parser.add_argument("--max-vus-probe", type=int, default=50, help="closed-loop users to find the maximum")
    parser.add_argument("--rate", type=float, help="skip the probe and use this rate")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        from runner.load.run import run_load  # noqa: F401
        from runner.load.settings import LoadOverrides
        from runner.results.codec import encode
    except ImportError:
        h.say(args, "row 5 needs the load engine (runner.load.run.run_load); it is not there yet")
        return 3
    client_core = h.pin_client()
    out: dict[str, Any] = {"row": 5, **h.machine()}
    with h.EchoServers() as servers:
        url = servers.url
        h.say(args, f"row 5: open model; picows on core {servers.core}, client on core {client_core}")
        if args.rate:
            max_rate = args.rate * 2
        else:
            meter = h.ServerMeter(servers)
            probe, pm = h.run_async(
                _run(url, None, LoadOverrides(vus=args.max_vus_probe, duration_s=args.seconds)), args.loop
            )
            if probe.error:
                raise RuntimeError(probe.error)
            max_rate = probe.iterations / probe.duration_s
            out["probe"] = {
                "iterations": probe.iterations,
                "duration_s": probe.duration_s,
                "max_rate": max_rate,
                "client_cpu": pm["cpu"] / pm["wall"],
                "server_cpu": meter.share(),
            }
            h.say(
                args,
                f"  maximum (closed loop, {args.max_vus_probe} users, no sleep): {max_rate:.0f} iterations/s "
                f"(client {pm['cpu'] / pm['wall']:.0%} of a core, server {out['probe']['server_cpu']:.0%})",
            )
        rate = max_rate / 2
        sleep_s = CONNECTIONS / rate
        meter = h.ServerMeter(servers)
        result, m = h.run_async(
            _run(
                url,
                sleep_s,
                LoadOverrides(rate=rate, duration_s=2 * args.seconds, max_vus=int(CONNECTIONS * 1.5)),
            ),
            args.loop,
        )
        server_cpu = meter.share()
        others_cpu = meter.others(m["cpu"] / m["wall"])
    load = encode(result)["settings"]["load"]
    achieved = load["achieved_rate"]
    lag = load.get("lag_ms") or {}
    it = load.get("iteration_ms") or {}
    little = achieved * it.get("mean", 0.0) / 1000
    row = {
        "target_rate": rate,
        "achieved_rate": achieved,
        "achieved_vs_target": achieved / rate - 1,
        "sleep_s": sleep_s,
        "started": load.get("started"),
        "dropped": load.get("dropped"),
        "lag_p50_ms": lag.get("p50"),
        "lag_p99_ms": lag.get("p99"),
        "lag_max_ms": lag.get("max"),
        "lag_ms": lag,
        "iteration_mean_ms": it.get("mean"),
        "iteration_p99_ms": it.get("p99"),
        "little_rate_x_mean": little,
        "mean_open_connections": m["mean_open_connections"],
        "max_open_connections": m["max_open_connections"],
        "vus_max_active": load.get("vus_max_active"),
        "loop_stall_p99_ms": m["loop_stall_p99_ms"],
        "loop_stall_max_ms": m["loop_stall_max_ms"],
        "little_error": little / m["mean_open_connections"] - 1 if m["mean_open_connections"] else None,
        "client_cpu": m["cpu"] / m["wall"],
        "others_cpu": others_cpu,
        "server_cpu": server_cpu,
        "error": result.error,
        "read_p99_ms": next(
            (s.latency_ms.p99 for s in result.steps if s.kind == "read" and s.latency_ms), None
        ),
    }
    out["open"] = row
    h.say(
        args,
        f"  open model: target {rate:.0f}/s, achieved {achieved:.1f}/s ({row['achieved_vs_target']:+.2%}); "
        f"schedule lag p50 {row['lag_p50_ms']} / p99 {row['lag_p99_ms']} ms (max {row['lag_max_ms']}); "
        f"dropped {row['dropped']}; "
        f"sleep {sleep_s * 1000:.0f} ms",
    )
    h.say(
        args,
        f"  Little's law: achieved rate x mean iteration ({row['iteration_mean_ms']} ms) = {little:.0f} vs "
        f"mean open connections {m['mean_open_connections']:.0f} (max {m['max_open_connections']}); "
        f"client {row['client_cpu']:.0%} of a core, server {server_cpu:.0%}, others {others_cpu:.0%}"
        + (f"; error: {result.error}" if result.error else ""),
    )
    h.say(
        args,
        f"  event loop stalls (a 20 ms sleep woken late): p99 {m['loop_stall_p99_ms']:.1f} ms, "
        f"max {m['loop_stall_max_ms']:.1f} ms",
    )
    h.emit(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
