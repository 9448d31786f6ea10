"""Row 1: closed loop, 100 connections, 64-byte JSON carrying a sequence number, each read waiting
for the echo with that number. Round trips/s and client CPU per round trip, in one run:

- ``websockets``: a plain loop on websockets' asyncio API (send json.dumps, recv, json.loads,
  compare the sequence number) -- the baseline the target is set against (>= 1.5x);
- ``client``: the same loop on wsload's connection layer (WebSocketClient.write/read);
- ``picows``: the same exchange on picows' client (C frame parser and encoder), written the way
  picows is meant to be used: the next message is sent from the ``on_ws_frame`` callback (a peer
  from the issue's table, measured in the same run; not in the default ``--tools``);
- ``wsload``: the scenario bench/scenarios/roundtrip.yaml run by wsload's engine: one virtual user
  per connection, ``repeat`` with ``index: seq``: ``write json {seq: "{{ seq }}", ...}`` +
  ``read match json {seq: ...}``,
  with templates, matching, recorders and HDR histograms as in a real run. When the load engine
  (``runner.load.run.run_load``) exists it drives the users (``--engine load``); otherwise the bench
  drives ``VirtualUser.run_iteration()`` itself, as ``runner/engine/__init__.py`` describes
  (``--engine vu``), which is the per-user path the load engine runs.

The client runs pinned to the first core, the picows echo server in its own process on the last
core; the server's CPU share is printed for every run. Tools alternate over ``--rounds``.

    python bench/bench_roundtrip.py                       # 3 rounds x 3 s per tool
    python bench/bench_roundtrip.py --seconds 10 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h

SCENARIO = os.path.join(h.BENCH_DIR, "scenarios", "roundtrip.yaml")


async def _measure(
    coros: list[Awaitable[None]],
    count: Callable[[], int],
    stop: Callable[[], None],
    warmup: float,
    seconds: float,
    meter_of: Callable[[], h.ServerMeter],
) -> dict[str, float]:
    n, cpu, wall, shares = await h.measure(coros, count, stop, warmup, seconds, meter_of, drain_s=30)
    return {"rt_per_s": n / wall, "us_cpu_per_rt": cpu / n * 1e6, **shares}


async def run_websockets(url: str, n: int, warmup: float, seconds: float, meter: Any) -> dict[str, float]:
    from websockets.asyncio.client import connect

    conns = [await connect(url, compression=None, max_size=1 << 20) for _ in range(n)]
    counts = [0] * n
    running = [True]
    dumps, loads = json.dumps, json.loads

    async def user(i: int, ws: Any) -> None:
        send, recv = ws.send, ws.recv
        seq = 0
        pad = "x" * 34
        while running[0]:
            seq += 1
            await send(dumps({"seq": seq, "vu": i, "payload": pad}))
            while loads(await recv())["seq"] != seq:
                pass
            counts[i] += 1

    out = await _measure(
        [user(i, c) for i, c in enumerate(conns)],
        lambda: sum(counts),
        lambda: running.__setitem__(0, False),
        warmup,
        seconds,
        meter,
    )
    await asyncio.gather(*(ws.close() for ws in conns))
    return out


async def run_client(url: str, n: int, warmup: float, seconds: float, meter: Any) -> dict[str, float]:
    from runner.client import ConnectOptions, WebSocketClient

    client = WebSocketClient()
    socks = [await client.open(url, ConnectOptions(timeout_s=10)) for _ in range(n)]
    assert all(s >= 0 for s in socks), client.last_error()
    counts = [0] * n
    running = [True]
    dumps, loads = json.dumps, json.loads

    async def user(i: int, sock: int) -> None:
        write, read = client.write, client.read
        seq = 0
        pad = "x" * 34
        while running[0]:
            seq += 1
            write(sock, dumps({"seq": seq, "vu": i, "payload": pad}))
            while True:
                result = await read(sock, 10.0)
                if result.rc != 0:
                    raise RuntimeError(str(client.last_error()))
                if loads(result.data)["seq"] == seq:  # type: ignore[arg-type]
                    break
            counts[i] += 1

    out = await _measure(
        [user(i, s) for i, s in enumerate(socks)],
        lambda: sum(counts),
        lambda: running.__setitem__(0, False),
        warmup,
        seconds,
        meter,
    )
    await client.aclose()
    return out


async def run_picows(url: str, n: int, warmup: float, seconds: float, meter: Any) -> dict[str, float]:
    from picows import WSListener, WSMsgType, ws_connect

    counts = [0] * n
    running = [True]
    dumps, loads = json.dumps, json.loads
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    active = [n]
    pad = "x" * 34

    class User(WSListener):  # type: ignore[misc]
        def __init__(self, i: int) -> None:
            super().__init__()
            self.i = i
            self.seq = 0
            self.transport: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def send_next(self) -> None:
            self.seq += 1
            message = dumps({"seq": self.seq, "vu": self.i, "payload": pad}).encode()
            self.transport.send(WSMsgType.TEXT, message)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != WSMsgType.TEXT:
                return
            if loads(frame.get_payload_as_utf8_text())["seq"] != self.seq:
                return
            counts[self.i] += 1
            if running[0]:
                self.send_next()
            else:
                active[0] -= 1
                if not active[0] and not done.done():
                    done.set_result(None)

    users = [(await ws_connect(lambda i=i: User(i), url))[1] for i in range(n)]

    async def start() -> None:
        for user in users:
            user.send_next()
        await done

    out = await _measure(
        [start()], lambda: sum(counts), lambda: running.__setitem__(0, False), warmup, seconds, meter
    )
    for user in users:
        user.transport.disconnect()
    return out


async def run_wsload_vu(url: str, n: int, warmup: float, seconds: float, meter: Any) -> dict[str, float]:
    """The engine's per-user path: RunContext + VirtualUser.run_iteration() in a loop per user."""
    from runner.client import WebSocketClient
    from runner.engine.vu import RunContext, VirtualUser
    from runner.loader import load_scenario
    from runner.results.recorders import RunRecorder

    scenario = load_scenario(SCENARIO, target=url.rstrip("/"))
    recorder = RunRecorder(time.monotonic_ns())
    ctx = RunContext(scenario, recorder, scenario.target)
    client = WebSocketClient()
    running = [True]
    reads = [rec for rec in recorder.steps.values() if rec.kind == "read"]
    failed: list[str] = []

    async def user(vu_id: int) -> None:
        vu = VirtualUser(ctx, client, vu_id)
        while running[0]:
            if not await vu.run_iteration():
                failed.append(str(recorder.failures)[:500])
                return

    out = await _measure(
        [user(i + 1) for i in range(n)],
        lambda: sum(r.ok for r in reads),
        lambda: running.__setitem__(0, False),
        warmup,
        seconds,
        meter,
    )
    if failed:
        raise RuntimeError(f"wsload iterations failed: {failed[0]}")
    await client.aclose()
    return out


async def run_wsload_load(url: str, n: int, warmup: float, seconds: float, meter_of: Any) -> dict[str, float]:
    """Through the load engine: ``await run_load(scenario, target=..., overrides=..., workers=1)``
    in this (pinned) process. The whole run is measured, opening the connections included (the
    warm-up cannot be cut out), for ``warmup + seconds``."""
    from runner.load.run import run_load
    from runner.load.settings import LoadOverrides
    from runner.loader import load_scenario

    scenario = load_scenario(SCENARIO, target=url.rstrip("/"))
    meter = meter_of()
    c0, t0 = _cpu_all(), time.perf_counter()
    result = await run_load(
        scenario,
        target=url.rstrip("/"),
        overrides=LoadOverrides(vus=n, duration_s=warmup + seconds),
        workers=1,
        handle_signals=False,
    )
    cpu, wall = _cpu_all() - c0, time.perf_counter() - t0
    server = meter.share()
    reads = sum(s.ok for s in result.steps if s.kind == "read")
    if not reads or result.error:
        raise RuntimeError(f"wsload run: {reads} reads, error {result.error!r}")
    busy = result.duration_s or wall
    return {
        "rt_per_s": reads / busy,
        "us_cpu_per_rt": cpu / reads * 1e6,
        "client_cpu": cpu / wall,
        "server_cpu": server,
        "others_cpu": meter.others(cpu / wall),
    }


def _cpu_all() -> float:
    """CPU seconds of this process and its waited-for children (load workers)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def engine_mode(requested: str) -> str:
    """``load`` when the load engine (runner.load.run.run_load) can be imported, else ``vu``."""
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
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument(
        "--tools", default="websockets,client,wsload", help="any of websockets,client,picows,wsload"
    )
    parser.add_argument(
        "--engine",
        choices=["auto", "vu", "load"],
        default="auto",
        help="how wsload runs the scenario (default: the load engine when present)",
    )
    parser.add_argument(
        "--server",
        choices=["picows", "embedded", "node"],
        default="picows",
        help="the echo server: picows (C), wsload's embedded one, or Node ws (a server on another runtime)",
    )
    args = parser.parse_args(argv)
    engine = engine_mode(args.engine)
    tools = args.tools.split(",")
    client_core = h.pin_client()
    info: dict[str, Any] = {
        "row": 1,
        "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "loop": args.loop,
        "engine": engine,
        **h.machine(),
    }
    results: dict[str, list[dict[str, float]]] = {t: [] for t in tools}
    with h.EchoServers(impl=args.server) as servers:
        url = servers.url
        h.say(
            args,
            f"row 1: {args.connections} connections, 64 B JSON with seq, read match; server {args.server} "
            f"on core {servers.core}, client on core {client_core}; loop {args.loop}; "
            f"wsload engine: {engine}; "
            f"{args.rounds} x {args.seconds:g} s per tool",
        )
        meter_of = lambda: h.ServerMeter(servers)  # noqa: E731
        for round_ in range(args.rounds):
            for tool in tools:
                fn = {
                    "websockets": run_websockets,
                    "client": run_client,
                    "picows": run_picows,
                    "wsload": run_wsload_load if engine == "load" else run_wsload_vu,
                }[tool]
                row = h.run_async(fn(url, args.connections, args.warmup, args.seconds, meter_of), args.loop)
                results[tool].append(row)
                h.say(
                    args,
                    f"  round {round_ + 1} {tool:>10}: {row['rt_per_s']:8.0f} rt/s  "
                    f"{row['us_cpu_per_rt']:6.2f} us CPU/rt  (client {row['client_cpu']:.0%} of a core, "
                    f"server {row['server_cpu']:.0%}, others {row['others_cpu']:.0%})",
                )
    medians = {t: h.median_rows(rows) for t, rows in results.items()}
    base = medians.get("websockets", {}).get("rt_per_s")
    base_us = medians.get("websockets", {}).get("us_cpu_per_rt")
    h.say(args, "median of rounds (x websockets: by round trips/s, and by CPU per round trip):")
    for tool, m in medians.items():
        ratio = (
            f"  {m['rt_per_s'] / base:4.2f}x / {base_us / m['us_cpu_per_rt']:4.2f}x websockets"
            if base and base_us
            else ""
        )
        h.say(
            args,
            f"  {tool:>10}: {m['rt_per_s']:8.0f} round trips/s  {m['us_cpu_per_rt']:6.2f} us CPU/rt  "
            f"server {m['server_cpu']:.0%} others {m['others_cpu']:.0%}{ratio}",
        )
    h.emit(
        args,
        {
            **info,
            "median": medians,
            "rounds_data": results,
            "ratio_vs_websockets": {t: m["rt_per_s"] / base for t, m in medians.items()} if base else None,
            "cpu_ratio_vs_websockets": (
                {t: base_us / m["us_cpu_per_rt"] for t, m in medians.items()} if base_us else None
            ),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
