"""Rows 3 and 4: connection opens per second per client core, ws:// and wss:// (TLS 1.3, ECDSA
P-256 certificate), 50 opens in flight. Each open is followed by a WebSocket close (close frame,
the server ends TCP), for every tool alike:

- ``websockets``: ``await connect(url)`` then ``await ws.close()`` on websockets' asyncio API;
- ``client``: wsload's ``WebSocketClient.open`` then ``close``;
- ``wsload``: the scenario bench/scenarios/opens.yaml (open, close) run by the engine's virtual
  run by the load engine (``runner.load.run.run_load``, one worker, in this pinned process) when
  present (``--engine load``, the default then); else the engine's virtual users driven by the
  bench (``VirtualUser.run_iteration()`` in a loop, 50 users; ``--engine vu``).

"Per client core" is opens divided by the client process's CPU seconds (the client is pinned
to one core, so this is also the rate a saturated core reaches). The server (picows, its own
process on the other core) reports its CPU share. Tools alternate over ``--rounds``.

    python bench/bench_opens.py                    # ws:// and wss://, 3 rounds x 3 s per tool
    python bench/bench_opens.py --schemes wss --seconds 10 --json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h

SCENARIO = os.path.join(h.BENCH_DIR, "scenarios", "opens.yaml")


async def _measure(
    coros: list[Awaitable[None]],
    count: Callable[[], int],
    stop: Callable[[], None],
    warmup: float,
    seconds: float,
    meter_of: Callable[[], h.ServerMeter],
) -> dict[str, float]:
    n, cpu, wall, shares = await h.measure(coros, count, stop, warmup, seconds, meter_of)
    return {"opens_per_s": n / wall, "opens_per_core_s": n / cpu, "us_cpu_per_open": cpu / n * 1e6, **shares}


async def run_websockets(
    url: str, conc: int, tls: h.TlsFiles | None, warmup: float, seconds: float, meter_of: Any
) -> dict[str, float]:
    from websockets.asyncio.client import connect

    ctx = tls.client_context() if tls else None
    count = [0]
    running = [True]

    async def user() -> None:
        while running[0]:
            ws = await connect(url, ssl=ctx, compression=None, open_timeout=30)
            count[0] += 1
            await ws.close()

    return await _measure(
        [user() for _ in range(conc)],
        lambda: count[0],
        lambda: running.__setitem__(0, False),
        warmup,
        seconds,
        meter_of,
    )


async def run_client(
    url: str, conc: int, tls: h.TlsFiles | None, warmup: float, seconds: float, meter_of: Any
) -> dict[str, float]:
    from runner.client import ConnectOptions, WebSocketClient

    options = ConnectOptions(timeout_s=30, ca_certificates=tls.ca_pem if tls else None)
    client = WebSocketClient()
    count = [0]
    running = [True]

    async def user() -> None:
        while running[0]:
            sock = await client.open(url, options)
            if sock < 0:
                raise RuntimeError(str(client.last_error()))
            count[0] += 1
            await client.close(sock, 5.0)

    return await _measure(
        [user() for _ in range(conc)],
        lambda: count[0],
        lambda: running.__setitem__(0, False),
        warmup,
        seconds,
        meter_of,
    )


async def run_wsload_vu(
    url: str, conc: int, tls: h.TlsFiles | None, warmup: float, seconds: float, meter_of: Any
) -> dict[str, float]:
    from runner.client import WebSocketClient
    from runner.engine.vu import RunContext, VirtualUser
    from runner.loader import load_scenario
    from runner.results.recorders import RunRecorder

    scenario = load_scenario(SCENARIO, target=url.rstrip("/"))
    recorder = RunRecorder(time.monotonic_ns())
    ctx = RunContext(scenario, recorder, scenario.target, extra_ca=tls.ca_pem if tls else None)
    client = WebSocketClient()
    opens = next(r for r in recorder.steps.values() if r.kind == "open")
    running = [True]
    failed: list[str] = []

    async def user(vu_id: int) -> None:
        vu = VirtualUser(ctx, client, vu_id)
        while running[0]:
            if not await vu.run_iteration():
                failed.append(str(recorder.failures)[:500])
                return

    out = await _measure(
        [user(i + 1) for i in range(conc)],
        lambda: opens.ok,
        lambda: running.__setitem__(0, False),
        warmup,
        seconds,
        meter_of,
    )
    if failed:
        raise RuntimeError(f"wsload iterations failed: {failed[0]}")
    return out


async def run_wsload_load(
    url: str, conc: int, tls: h.TlsFiles | None, warmup: float, seconds: float, meter_of: Any
) -> dict[str, float]:
    """Through the load engine, ``run_load(..., workers=1)`` in this process (whole run measured)."""
    import dataclasses
    import resource

    from runner.load.run import run_load
    from runner.load.settings import LoadOverrides
    from runner.loader import load_scenario

    def cpu_all() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    scenario = load_scenario(SCENARIO, target=url.rstrip("/"))
    if tls:  # trust the bench CA, as a scenario's caCertificates would
        conns = {
            k: dataclasses.replace(v, ca_certificates=tls.ca_pem) for k, v in scenario.connections.items()
        }
        scenario = dataclasses.replace(scenario, connections=conns)
    meter = meter_of()
    c0, t0 = cpu_all(), time.perf_counter()
    result = await run_load(
        scenario,
        target=url.rstrip("/"),
        overrides=LoadOverrides(vus=conc, duration_s=warmup + seconds),
        workers=1,
        handle_signals=False,
    )
    cpu, wall = cpu_all() - c0, time.perf_counter() - t0
    n = sum(s.ok for s in result.steps if s.kind == "open")
    if not n or result.error:
        raise RuntimeError(f"wsload run: {n} opens, error {result.error!r}")
    busy = result.duration_s or wall
    return {
        "opens_per_s": n / busy,
        "opens_per_core_s": n / cpu,
        "us_cpu_per_open": cpu / n * 1e6,
        "client_cpu": cpu / wall,
        "server_cpu": meter.share(),
        "others_cpu": meter.others(cpu / wall),
    }


def _engine_mode(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        from runner.load.run import run_load  # noqa: F401
    except ImportError:
        return "vu"
    return "load"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    h.common_args(parser, seconds=3.0, rounds=3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--schemes", default="ws,wss")
    parser.add_argument("--tools", default="websockets,client,wsload")
    parser.add_argument(
        "--engine",
        choices=["auto", "vu", "load"],
        default="auto",
        help="how wsload runs the scenario (default: the load engine when present)",
    )
    args = parser.parse_args(argv)
    args.engine = _engine_mode(args.engine)
    tools = args.tools.split(",")
    client_core = h.pin_client()
    out: dict[str, Any] = {
        "rows": "3,4",
        "concurrency": args.concurrency,
        "engine": args.engine,
        **h.machine(),
    }
    tls_files = h.TlsFiles()
    try:
        for scheme in args.schemes.split(","):
            tls = tls_files if scheme == "wss" else None
            results: dict[str, list[dict[str, float]]] = {t: [] for t in tools}
            with h.EchoServers(tls=tls) as servers:
                h.say(
                    args,
                    f"opens {scheme}:// ({'TLS 1.3, ECDSA P-256' if tls else 'plain'}), concurrency "
                    f"{args.concurrency}; picows on core {servers.core}, client on core {client_core}; "
                    f"{args.rounds} x {args.seconds:g} s per tool",
                )
                meter_of = lambda: h.ServerMeter(servers)  # noqa: E731
                for round_ in range(args.rounds):
                    for tool in tools:
                        fn = {
                            "websockets": run_websockets,
                            "client": run_client,
                            "wsload": run_wsload_load if args.engine == "load" else run_wsload_vu,
                        }[tool]
                        row = h.run_async(
                            fn(servers.url, args.concurrency, tls, args.warmup, args.seconds, meter_of),
                            args.loop,
                        )
                        results[tool].append(row)
                        h.say(
                            args,
                            f"  round {round_ + 1} {tool:>10}: {row['opens_per_s']:7.0f} opens/s  "
                            f"{row['opens_per_core_s']:7.0f} per client core  "
                            f"(client {row['client_cpu']:.0%}, server {row['server_cpu']:.0%}, "
                            f"others {row['others_cpu']:.0%})",
                        )
            medians = {t: h.median_rows(rows) for t, rows in results.items()}
            base = medians.get("websockets", {}).get("opens_per_core_s")
            h.say(args, f"median of rounds, {scheme}://:")
            for tool, m in medians.items():
                ratio = f"  {m['opens_per_core_s'] / base:4.2f}x websockets" if base else ""
                h.say(
                    args,
                    f"  {tool:>10}: {m['opens_per_s']:7.0f} opens/s  {m['opens_per_core_s']:7.0f} per client "
                    f"core  {m['us_cpu_per_open']:6.0f} us CPU/open  server {m['server_cpu']:.0%}{ratio}",
                )
            out[scheme] = {"median": medians, "rounds_data": results}
    finally:
        tls_files.cleanup()
    h.emit(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
