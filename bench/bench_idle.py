"""Row 2: idle connections held. RSS per connection of the client process, and a many-connection
hold spread over client worker processes, source addresses and server ports.

Each tool runs in a fresh client process pinned to the first core (the echo servers are other
processes on the last core). The client process imports everything and warms up (opens and closes
a few connections) first, then RSS is read before and after opening N connections (after a
gc.collect), so the figure is the memory the connections themselves cost:

- ``websockets``: websockets' asyncio ``connect`` objects held in a list;
- ``client``: wsload's connection layer, ``WebSocketClient.open`` sockets held;
- ``wsload``: the load engine (``runner.load.run.run_load``, one worker per client process)
  running bench/scenarios/idle.yaml (open, then a long sleep) with N users; RSS is read once all
  N connections are open (counted on the engine's own clients);
- ``wsload-vu``: the engine's per-user path without the load engine, one ``VirtualUser`` per
  connection running the same scenario as a task (several server ports per client process).

    python bench/bench_idle.py                                  # 5,000 connections per tool
    python bench/bench_idle.py --connections 50000 --workers 4 --tools wsload \\
        --server-processes 4 --reuse-port --hold 10             # the 50k hold
    python bench/bench_idle.py --cli --connections 50000 --workers 4 \\
        --server-processes 4 --reuse-port --hold 10             # the same through 'wsload run'

With ``--workers W`` the connections are split over W client processes, each using its own
source address 127.0.0.(2+i) (one source address reaches one server port through ~28,000
ephemeral ports) and the server ports round-robin; the limits of this machine are 20,000 open
files per process (so W >= N/19,000 and server processes >= N/19,000).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h

SCENARIO = os.path.join(h.BENCH_DIR, "scenarios", "idle.yaml")
FD_PER_PROCESS = 19_000


# --- the client process -----------------------------------------------------------------------


async def _hold(tool: str, urls: list[str], n: int, source: str | None, concurrency: int) -> None:
    """Open n connections (warm up first), print RSS figures as JSON, hold until stdin closes."""
    opened: list[Any] = []
    holders: list[asyncio.Task[Any]] = []
    if tool == "websockets":
        from websockets.asyncio.client import connect

        async def open_one(i: int) -> None:
            kwargs: dict[str, Any] = {"compression": None, "open_timeout": 60, "ping_interval": None}
            if source:
                kwargs["local_addr"] = (source, 0)
            opened.append(await connect(urls[i % len(urls)], **kwargs))

        async def close_all() -> None:
            await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)

    elif tool == "client":
        from runner.client import ConnectOptions, WebSocketClient

        client = WebSocketClient()
        options = ConnectOptions(timeout_s=60, source_address=source)

        async def open_one(i: int) -> None:
            sock = await client.open(urls[i % len(urls)], options)
            if sock < 0:
                raise RuntimeError(str(client.last_error()))
            opened.append(sock)

        async def close_all() -> None:
            await client.aclose()

    else:  # wsload-vu: the engine's virtual users, each a task running the scenario
        from runner.client import WebSocketClient
        from runner.engine.vu import RunContext, VirtualUser
        from runner.loader import load_scenario
        from runner.results.recorders import RunRecorder

        scenarios = [load_scenario(SCENARIO, target=u.rstrip("/")) for u in urls]
        recorder = RunRecorder(time.monotonic_ns())
        ctxs = [RunContext(s, recorder, s.target) for s in scenarios]
        client = WebSocketClient()
        open_rec = next(r for r in recorder.steps.values() if r.kind == "open")
        vu_no = [0]

        async def open_one(i: int) -> None:
            vu_no[0] += 1
            vu = VirtualUser(ctxs[i % len(ctxs)], client, vu_no[0], source_address=source)
            before = open_rec.count
            holders.append(asyncio.ensure_future(vu.run_iteration()))
            while open_rec.count == before:  # bounded by the open step's own time-out (30 s)
                await asyncio.sleep(0.005)
                if holders[-1].done():
                    break
            if open_rec.failures or open_rec.ok != open_rec.count:
                raise RuntimeError(f"open failed: {recorder.failures}")

        async def close_all() -> None:
            for t in holders:
                t.cancel()
            await asyncio.gather(*holders, return_exceptions=True)
            await client.aclose()

    async def open_many(count: int, offset: int) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await open_one(i)

        await asyncio.gather(*(one(offset + i) for i in range(count)))

    # warm up: imports, caches, the loop's own structures, then let go of them
    await open_many(min(20, n), 0)
    await close_all()
    opened.clear()
    holders.clear()
    if tool != "websockets":
        client._next = 0
    await asyncio.sleep(0.2)
    gc.collect()
    rss0 = h.rss_kib()
    t0 = time.perf_counter()
    await open_many(n, 0)
    open_s = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    gc.collect()
    rss1 = h.rss_kib()
    print(
        json.dumps(
            {
                "opened": n,
                "rss_before_kib": rss0,
                "rss_after_kib": rss1,
                "open_s": open_s,
                "cpu_s": time.process_time(),
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # hold until the parent closes stdin
    alive = sum(1 for t in holders if not t.done()) if holders else len(opened)
    print(json.dumps({"alive_at_end": alive, "rss_end_kib": h.rss_kib()}), flush=True)
    os._exit(0)


async def _hold_engine(urls: list[str], n: int, source: str | None) -> None:
    """wsload through the load engine: run_load (one worker, this process) with n users of the
    idle scenario; RSS before (after a warm-up run) and once all n connections are open."""
    import dataclasses

    from runner.client import WebSocketClient
    from runner.load.run import run_load
    from runner.load.settings import LoadOverrides
    from runner.loader import load_scenario

    clients: list[WebSocketClient] = []

    def factory() -> WebSocketClient:
        # As run_load does without a factory: one client per run, shared by its users.
        if not clients:
            clients.append(WebSocketClient())
        return clients[0]

    def open_now() -> int:
        return sum(c.open_sockets for c in clients)

    scenario = load_scenario(SCENARIO, target=urls[0].rstrip("/"))
    assert scenario.load is not None
    scenario = dataclasses.replace(scenario, load=dataclasses.replace(scenario.load, graceful_stop_s=0.2))
    sources = (source,) if source else ()

    def run(vus: int, seconds: float) -> Any:
        return run_load(
            scenario,
            target=urls[0].rstrip("/"),
            workers=1,
            handle_signals=False,
            client_factory=factory,
            overrides=LoadOverrides(vus=vus, duration_s=seconds, source_addresses=sources),
        )

    await run(min(20, n), 0.5)  # warm-up: imports, caches, then let go of them
    clients.clear()
    await asyncio.sleep(0.2)
    gc.collect()
    rss0 = h.rss_kib()
    t0 = time.perf_counter()
    task = asyncio.ensure_future(run(n, 3600))
    deadline = time.monotonic() + 300
    while open_now() < n and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    open_s = time.perf_counter() - t0
    opened = open_now()
    await asyncio.sleep(0.5)
    gc.collect()
    rss1 = h.rss_kib()
    print(
        json.dumps(
            {
                "opened": opened,
                "rss_before_kib": rss0,
                "rss_after_kib": rss1,
                "open_s": open_s,
                "cpu_s": time.process_time(),
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    print(json.dumps({"alive_at_end": open_now(), "rss_end_kib": h.rss_kib()}), flush=True)
    os._exit(0)


def _client_main(args: argparse.Namespace) -> int:
    os.sched_setaffinity(0, {h.cores()[0]})
    h.raise_nofile()
    import websockets  # noqa: F401  (import cost outside the measurement)

    import runner.engine.vu  # noqa: F401

    urls, source = args.urls.split(","), args.source or None
    if args.tool == "wsload":  # the load engine (run_load)
        h.run_async(_hold_engine(urls, args.n, source), args.loop)
    else:
        h.run_async(_hold(args.tool, urls, args.n, source, args.concurrency), args.loop)
    return 0


# --- the parent -------------------------------------------------------------------------------


def _run_tool(args: argparse.Namespace, tool: str, servers: h.EchoServers) -> dict[str, Any]:
    workers = max(args.workers, -(-args.connections // FD_PER_PROCESS))
    share = [
        args.connections // workers + (1 if i < args.connections % workers else 0) for i in range(workers)
    ]
    procs = []
    for i in range(workers):
        source = f"127.0.0.{2 + i}" if workers > 1 else ""
        # round-robin the server ports, each worker starting at a different one
        urls = servers.urls[i % len(servers.urls) :] + servers.urls[: i % len(servers.urls)]
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--client-process",
            "--tool",
            tool,
            "--n",
            str(share[i]),
            "--urls",
            ",".join(urls),
            "--source",
            source,
            "--concurrency",
            str(args.concurrency),
            "--loop",
            args.loop,
        ]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    meter = h.ServerMeter(servers)
    srv_rss0 = servers.rss_kib()
    t0 = time.perf_counter()
    figures = []
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            p.wait()
            raise RuntimeError(f"{tool} client process failed (exit {p.returncode})")
        figures.append(json.loads(line))
    all_open_s = time.perf_counter() - t0
    time.sleep(args.hold)  # every connection is open now: hold them
    srv_rss = servers.rss_kib()
    ends = []
    for p in procs:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.close()
        ends.append(json.loads(p.stdout.readline()))
        p.wait(timeout=60)
    opened = sum(f["opened"] for f in figures)
    grown = sum(f["rss_after_kib"] - f["rss_before_kib"] for f in figures)
    return {
        "connections": opened,
        "workers": workers,
        "kib_per_conn": grown / opened,
        "client_rss_mib_total": sum(f["rss_after_kib"] for f in figures) / 1024,
        "alive_after_hold": sum(e["alive_at_end"] for e in ends),
        "hold_s": args.hold,
        "open_s": all_open_s,
        "opens_per_s": opened / all_open_s,
        "server_rss_grown_kib_per_conn": (srv_rss - srv_rss0) / opened,  # first tool only: RSS is kept
        "server_cpu": meter.share(),
    }


def _established_to(port: int) -> int:
    """Client-side ESTABLISHED TCP connections to ``port`` on loopback, from /proc/net/tcp.
    Counted by their address pair: the file is read while the kernel's table changes, and an
    entry may then be listed twice (126,812 for 100,000 connections during a ramp, 2026-12-06)."""
    want = f":{port:04X}"
    seen = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            if parts[2].endswith(want) and parts[3] == "01":
                seen.add((parts[1], parts[2]))
    return len(seen)


def _tree_rss_kib(pid: int) -> tuple[int, int]:
    """(RSS in KiB, process count) of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, count, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += h.rss_kib(p)
            count += 1
        except (OSError, RuntimeError):
            pass
        todo += children.get(p, [])
    return total, count


#: Connections per source address in ``--cli`` (see ``_run_cli``).
SOURCE_SHARE = 10_000


def _run_cli(args: argparse.Namespace, servers: h.EchoServers) -> dict[str, Any]:
    """``wsload run bench/scenarios/idle.yaml --vus N --workers W`` as a user would run it, pinned
    to the client core; connections counted in /proc/net/tcp, RSS of its process tree."""
    import signal
    import tempfile

    url = servers.url
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    workers = max(args.workers, -(-args.connections // FD_PER_PROCESS))
    # A source address per 10,000 connections: Linux's connect() looks for a free ephemeral port
    # by scanning the range (even ports first), so a source address that holds 25,000 of its
    # ~28,000 ports to one server port makes each new connect() scan thousands of them.
    sources = [f"127.0.0.{2 + i}" for i in range(max(1, -(-args.connections // SOURCE_SHARE)))]
    if args.report:
        report = args.report
    else:
        fd, report = tempfile.mkstemp(suffix=".json")
        os.close(fd)
    scenario = SCENARIO
    if args.ramp_up:  # the scenario with a longer ramp: its own 10 s overflow the SYN queues at 100,000
        fd, scenario = tempfile.mkstemp(suffix=".yaml", dir=os.path.dirname(SCENARIO))
        with open(SCENARIO) as src, os.fdopen(fd, "w") as f:
            f.write(re.sub(r"ramp_up: \S+", f"ramp_up: {args.ramp_up:g}s", src.read()))
    cmd = [
        sys.executable,
        "-m",
        "runner",
        "run",
        scenario,
        "--target",
        url.rstrip("/"),
        "--vus",
        str(args.connections),
        "--duration",
        "600s",
        "--workers",
        str(workers),
        "--json",
        report,
        "--report-dir",
        "",
        "-q",
    ]
    for src in sources:
        cmd += ["--source-address", src]
    h.say(args, "  " + " ".join(cmd[2:]))
    meter = h.ServerMeter(servers)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=h.REPO, preexec_fn=lambda: os.sched_setaffinity(0, {h.cores()[0]}))
    established = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        established = _established_to(port)
        if established >= args.connections:
            break
        time.sleep(0.5)
    open_s = time.perf_counter() - t0
    time.sleep(args.hold)
    held = _established_to(port)
    rss, nproc = _tree_rss_kib(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    out: dict[str, Any] = {
        "connections": args.connections,
        "workers": workers,
        "source_addresses": sources,
        "established_reached": established,
        "open_s": open_s,
        "held_after_hold": held,
        "hold_s": args.hold,
        "rss_mib_total": rss / 1024,
        "processes": nproc,
        "kib_per_conn_incl_interpreters": rss / max(1, held),
        "exit_code": code,
        "server_cpu": meter.share(),
    }
    try:
        with open(report) as f:
            data = json.load(f)
        opens = [s for s in data["steps"] if s["kind"] == "open"]
        out["report_open_ok"] = sum(s["ok"] for s in opens)
        out["report_open_rc"] = {k: v for s in opens for k, v in s["rc"].items()}
        out["report_error"] = data.get("error", "")
    except (OSError, ValueError, KeyError) as exc:
        out["report_error"] = f"no report: {exc}"
    finally:
        if not args.report:
            os.unlink(report)
        if scenario != SCENARIO:
            os.unlink(scenario)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--tools", default="websockets,client,wsload")
    parser.add_argument("--workers", type=int, default=1, help="client processes (default: as few as fit)")
    parser.add_argument(
        "--server-processes", type=int, default=0, help="default: as few as fit the files limit"
    )
    parser.add_argument("--ports", type=int, default=1, help="listening ports per server process")
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="server processes share one port (SO_REUSEPORT): one target URL, as a load run has",
    )
    parser.add_argument(
        "--hold", "--seconds", type=float, default=2.0, help="seconds to hold all connections (default 2)"
    )
    parser.add_argument("--concurrency", type=int, default=100, help="opens in flight per client process")
    parser.add_argument(
        "--ramp-up",
        type=float,
        default=0.0,
        help="--cli: seconds to start all users over (default: the scenario's 10 s)",
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--report", help="--cli: keep wsload's JSON report at this path")
    parser.add_argument(
        "--cli",
        action="store_true",
        help="hold through 'wsload run --vus N --workers W' (wsload only; count from /proc/net/tcp)",
    )
    parser.add_argument("--client-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client_process:
        return _client_main(args)
    tools = args.tools.split(",")
    server_procs = args.server_processes or max(1, -(-args.connections // FD_PER_PROCESS))
    info: dict[str, Any] = {"row": 2, "connections": args.connections, **h.machine()}
    results: dict[str, Any] = {}
    with h.EchoServers(processes=server_procs, ports=args.ports, reuse_port=args.reuse_port) as servers:
        h.say(
            args,
            f"row 2: {args.connections} idle connections per tool; {server_procs} picows server process(es) "
            f"x {args.ports} port(s) on core {servers.core}; "
            f"clients on core {h.cores()[0]}; hold {args.hold:g} s",
        )
        if args.cli:
            row = _run_cli(args, servers)
            results["wsload-cli"] = row
            h.say(
                args,
                f"  wsload run: {row['established_reached']} established in {row['open_s']:.1f} s, "
                f"{row['held_after_hold']} still after {row['hold_s']:g} s; {row['processes']} processes, "
                f"RSS {row['rss_mib_total']:.0f} MiB "
                f"({row['kib_per_conn_incl_interpreters']:.1f} KiB/conn with the interpreters); "
                f"exit {row['exit_code']}; report: {row.get('report_open_ok')} opens ok, "
                f"rc {row.get('report_open_rc')}, {row.get('report_error')!r}; "
                f"server CPU {row['server_cpu']:.0%}",
            )
            tools = []
        for tool in tools:
            row = _run_tool(args, tool, servers)
            results[tool] = row
            h.say(
                args,
                f"  {tool:>10}: {row['kib_per_conn']:6.2f} KiB RSS/conn  ({row['connections']} conns in "
                f"{row['workers']} process(es), all open in {row['open_s']:.1f} s incl. process start, "
                f"{row['alive_after_hold']} alive after {row['hold_s']:g} s; client RSS total "
                f"{row['client_rss_mib_total']:.0f} MiB; server CPU {row['server_cpu']:.0%})",
            )
    h.emit(args, {**info, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
