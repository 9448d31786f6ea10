"""Round trips per second and CPU per round trip: wsload's client vs websockets' asyncio API.

Both clients drive N connections (default 100) against the same echo server, each connection
sending a 64-byte JSON text message and awaiting its echo, for a fixed time, over loopback.
The server runs in its own process pinned to the last core (os.sched_setaffinity), the client
on the first, so the client's CPU per round trip is what is measured:

    python bench/bench_client_roundtrip.py                   # picows echo server (fast, default)
    python bench/bench_client_roundtrip.py --server embedded # our EmbeddedServer /echo
    python bench/bench_client_roundtrip.py --seconds 10 --loop asyncio

CPU is the client process's user+system time (time.process_time) over the measured interval.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import functools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h

MESSAGE = h.MESSAGE  # 64 bytes of JSON


# --- the clients ------------------------------------------------------------------------------


async def run_wsload(url: str, connections: int, warmup: float, seconds: float) -> tuple[int, float, float]:
    from runner.client import ConnectOptions, WebSocketClient

    client = WebSocketClient()
    socks = [await client.open(url, ConnectOptions(timeout_s=10)) for _ in range(connections)]
    assert all(s >= 0 for s in socks), client.last_error()
    counts = [0] * connections
    running = [True]

    async def worker(i: int, sock: int) -> None:
        write, read = client.write, client.read
        while running[0]:
            write(sock, MESSAGE)
            result = await read(sock, 10.0)
            if result.rc != 0:
                raise RuntimeError(str(client.last_error()))
            counts[i] += 1

    measured = await _measure([worker(i, s) for i, s in enumerate(socks)], counts, running, warmup, seconds)
    await client.aclose()
    return measured


async def run_websockets(
    url: str, connections: int, warmup: float, seconds: float
) -> tuple[int, float, float]:
    from websockets.asyncio.client import connect

    conns = [await connect(url, compression=None, max_size=1 << 20) for _ in range(connections)]
    counts = [0] * connections
    running = [True]

    async def worker(i: int, ws: object) -> None:
        send, recv = ws.send, ws.recv  # type: ignore[attr-defined]
        while running[0]:
            await send(MESSAGE)
            await recv()
            counts[i] += 1

    measured = await _measure([worker(i, c) for i, c in enumerate(conns)], counts, running, warmup, seconds)
    for ws in conns:
        await ws.close()
    return measured


async def _measure(
    workers: list[Awaitable[None]], counts: list[int], running: list[bool], warmup: float, seconds: float
) -> tuple[int, float, float]:
    tasks = [asyncio.ensure_future(w) for w in workers]
    await asyncio.sleep(warmup)
    start_n, start_cpu, start_t = sum(counts), time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    n, cpu, wall = sum(counts) - start_n, time.process_time() - start_cpu, time.perf_counter() - start_t
    running[0] = False
    await asyncio.gather(*tasks)
    return n, cpu, wall


CLIENTS: dict[str, Callable[[str, int, float, float], Awaitable[tuple[int, float, float]]]] = {
    "wsload": run_wsload,
    "websockets": run_websockets,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server",
        choices=["picows", "embedded", "node"],
        default="picows",
        help="the echo server: picows (C), wsload's embedded one, or Node ws (a server on another runtime)",
    )
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per client (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per client (default 3)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--clients", default="wsload,websockets")
    parser.add_argument("--json", action="store_true", help="print one JSON object (text goes to stderr)")
    args = parser.parse_args(argv)
    print = functools.partial(builtins.print, file=sys.stderr if args.json else sys.stdout)
    client_core = h.pin_client()
    with h.EchoServers(impl=args.server) as servers:
        url = servers.url
        print(
            f"server: {args.server} (own process, core {servers.core}); client core {client_core}; "
            f"loop {args.loop}; "
            f"{args.connections} connections; 64 B JSON text; {args.rounds} x {args.seconds:g} s each"
        )
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in args.clients.split(",")}
        for round_ in range(args.rounds):  # alternate, so drift and noise hit both clients alike
            for name in results:
                coro = CLIENTS[name](url, args.connections, args.warmup, args.seconds)
                meter = h.ServerMeter(servers)
                n, cpu, wall = h.run_async(coro, args.loop)
                server_busy = meter.share()
                results[name].append((n / wall, cpu / n * 1e6))
                print(
                    f"  round {round_ + 1} {name:>10}: {n / wall:9.0f} round trips/s  "
                    f"{cpu / n * 1e6:6.2f} us CPU/rt"
                    f"  (client {cpu / wall:.0%} of a core, server ~{server_busy:.0%})",
                    flush=True,
                )
        print("median of rounds:")
        medians: dict[str, dict[str, float]] = {}
        for name, rows in results.items():
            rate = statistics.median(r for r, _ in rows)
            us = statistics.median(u for _, u in rows)
            print(f"{name:>11}: {rate:9.0f} round trips/s   {us:6.2f} us CPU per round trip")
            medians[name] = {"rt_per_s": rate, "us_cpu_per_rt": us}
    h.emit(args, {"connections": args.connections, "seconds": args.seconds, "median": medians, **h.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
