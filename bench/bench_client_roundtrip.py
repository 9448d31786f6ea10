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
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_BARE = json.dumps({"method": "dummy", "id": 123456, "payload": ""})
MESSAGE = json.dumps({"method": "dummy", "id": 123456, "payload": "x" * (64 - len(_BARE))})
assert len(MESSAGE.encode()) == 64 and json.loads(MESSAGE)["id"] == 123456


# --- the server process -----------------------------------------------------------------------


def serve(kind: str) -> None:
    """Run an echo server on 127.0.0.1, print 'PORT <n>' and run until stdin closes."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[-1]})
    import uvloop

    async def main() -> None:
        if kind == "picows":
            from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

            class Echo(WSListener):  # type: ignore[misc]
                def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                    if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                        transport.send(frame.msg_type, frame.get_payload_as_bytes())
                    elif frame.msg_type == WSMsgType.CLOSE:
                        transport.send_close(frame.get_close_code(), frame.get_close_message())
                        transport.disconnect()

            server = await ws_create_server(lambda _request: Echo(), "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            path = "/"
        else:
            from runner.server import EmbeddedServer

            embedded = await EmbeddedServer().start()
            port, path = embedded.port, "/echo"
        print(f"PORT {port} {path}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)

    uvloop.run(main())


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


def _cpu_of(pid: int) -> float:
    """User+system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", choices=["picows", "embedded"], default="picows")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per client (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per client (default 3)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--clients", default="wsload,websockets")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", args.server],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        _, port, path = server.stdout.readline().split()
        url = f"ws://127.0.0.1:{port}{path}"
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[0]})
        print(
            f"server: {args.server} (own process, core {cores[-1]}); client core {cores[0]}; "
            f"loop {args.loop}; "
            f"{args.connections} connections; 64 B JSON text; {args.rounds} x {args.seconds:g} s each"
        )
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in args.clients.split(",")}
        for round_ in range(args.rounds):  # alternate, so drift and noise hit both clients alike
            for name in results:
                coro = CLIENTS[name](url, args.connections, args.warmup, args.seconds)
                server_cpu0, wall0 = _cpu_of(server.pid), time.perf_counter()
                if args.loop == "uvloop":
                    import uvloop

                    n, cpu, wall = uvloop.run(coro)
                else:
                    n, cpu, wall = asyncio.run(coro)
                server_busy = (_cpu_of(server.pid) - server_cpu0) / (time.perf_counter() - wall0)
                results[name].append((n / wall, cpu / n * 1e6))
                print(
                    f"  round {round_ + 1} {name:>10}: {n / wall:9.0f} round trips/s  "
                    f"{cpu / n * 1e6:6.2f} us CPU/rt"
                    f"  (client {cpu / wall:.0%} of a core, server ~{server_busy:.0%})",
                    flush=True,
                )
        print("median of rounds:")
        for name, rows in results.items():
            rate = statistics.median(r for r, _ in rows)
            us = statistics.median(u for _, u in rows)
            print(f"{name:>11}: {rate:9.0f} round trips/s   {us:6.2f} us CPU per round trip")
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
