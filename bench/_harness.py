"""Shared pieces of the bench scripts: core pinning, the echo server processes, CPU and RSS of
processes, TLS material, the 64-byte JSON messages, and printing figures (``--json`` too).

Every bench pins itself (the client) to the first core and the target server to the last one,
and reports the server's CPU share so it can be seen not to be the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

T = TypeVar("T")

# --- messages ---------------------------------------------------------------------------------

_BARE = json.dumps({"method": "dummy", "id": 123456, "payload": ""})
MESSAGE = json.dumps({"method": "dummy", "id": 123456, "payload": "x" * (64 - len(_BARE))})
assert len(MESSAGE.encode()) == 64 and json.loads(MESSAGE)["id"] == 123456

_SEQ_PAD = "x" * (64 - len(json.dumps({"seq": 1000000, "payload": ""})))


def seq_message(seq: int) -> str:
    """A JSON text message of 64 bytes (for 7-digit sequence numbers) carrying ``seq``."""
    return json.dumps({"seq": seq, "payload": _SEQ_PAD})


assert len(seq_message(1_000_000).encode()) == 64


# --- cores and processes ----------------------------------------------------------------------


_ALLOWED = sorted(os.sched_getaffinity(0))  # before any pinning


def cores() -> tuple[int, int]:
    """(client core, server core): the first and the last core this process may use."""
    return _ALLOWED[0], _ALLOWED[-1]


def pin_client() -> int:
    core = cores()[0]
    os.sched_setaffinity(0, {core})
    return core


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_of(pid: int) -> float:
    """User+system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def run_async(coro: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# --- TLS material -----------------------------------------------------------------------------


class TlsFiles:
    """An ECDSA P-256 CA and a server certificate for 127.0.0.1 signed by it, in a temp dir."""

    def __init__(self) -> None:
        from runner.server.certs import issue, make_ca

        self._dir = tempfile.TemporaryDirectory(prefix="wsload-bench-")
        ca = make_ca("wsload bench CA")
        leaf = issue(ca, ("127.0.0.1", "localhost"))
        self.ca_pem = ca.cert_pem
        self.cert = os.path.join(self._dir.name, "server.pem")
        self.key = os.path.join(self._dir.name, "server.key")
        with open(self.cert, "w") as f:
            f.write(leaf.fullchain_pem)
        with open(self.key, "w") as f:
            f.write(leaf.key_pem)

    def client_context(self) -> Any:
        import ssl

        ctx = ssl.create_default_context(cadata=self.ca_pem)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx

    def cleanup(self) -> None:
        self._dir.cleanup()


# --- the echo servers -------------------------------------------------------------------------


#: The Node ``ws`` server the tests use (tests/node/server.js): a server wsload did not write, on
#: another runtime; ``impl="node"`` (``/echo``: every message back, same opcode).
NODE_SERVER = os.path.join(REPO, "tests", "node", "server.js")


class EchoServers:
    """``processes`` echo server processes with ``ports`` listening ports each, all pinned to
    the server core. ``urls`` lists every port's URL; ``cpu()`` sums the processes' CPU time.
    ``impl``: ``picows`` (C, uvloop), ``embedded`` (wsload's own) or ``node`` (Node ``ws``, one
    port per process, no TLS)."""

    def __init__(
        self,
        processes: int = 1,
        ports: int = 1,
        impl: str = "picows",
        tls: TlsFiles | None = None,
        core: int | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.impl = impl
        self.core = cores()[1] if core is None else core
        self.procs: list[subprocess.Popen[str]] = []
        self.urls: list[str] = []
        self.urls_by_process: list[list[str]] = []
        if impl == "node":
            self._start_node(processes, ports, tls, reuse_port)
            return
        scheme = "wss" if tls else "ws"
        cmd = [sys.executable, os.path.join(BENCH_DIR, "echo_server.py"), "--impl", impl]
        cmd += ["--ports", str(ports), "--core", str(self.core)]
        if tls:
            cmd += ["--tls-cert", tls.cert, "--tls-key", tls.key]
        if reuse_port:  # every process listens on the same port(s); the kernel spreads connections
            cmd += ["--reuse-port"]
        for i in range(processes):
            extra = ["--port", self.urls[0].rsplit(":", 1)[1].split("/")[0]] if reuse_port and i else []
            proc = subprocess.Popen(cmd + extra, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.procs.append(proc)
            assert proc.stdout is not None
            mine = []
            for line in proc.stdout:
                if line.startswith("READY"):
                    break
                _, port, path = line.split()
                mine.append(f"{scheme}://127.0.0.1:{port}{path}")
            if not mine:
                self.close()
                raise RuntimeError("the echo server did not start")
            self.urls_by_process.append(mine)
            if not (reuse_port and i):
                self.urls += mine
        self.url = self.urls[0]

    def _start_node(self, processes: int, ports: int, tls: TlsFiles | None, reuse_port: bool) -> None:
        if tls is not None or reuse_port or ports != 1:
            raise ValueError("the node echo server serves ws:// on one port per process")
        if not os.path.isdir(os.path.join(REPO, "tests", "node", "node_modules", "ws")):
            node_dir = os.path.join(REPO, "tests", "node")
            subprocess.run(
                ["npm", "ci", "--prefix", node_dir, "--silent", "--no-audit", "--no-fund"], check=True
            )
        for _ in range(processes):
            proc = subprocess.Popen(
                ["taskset", "-c", str(self.core), "node", NODE_SERVER, "0"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("PORT "):
                self.close()
                raise RuntimeError(f"the node echo server did not start: {line!r}")
            url = f"ws://127.0.0.1:{int(line.split()[1])}/echo"
            self.urls.append(url)
            self.urls_by_process.append([url])
        self.url = self.urls[0]

    def cpu(self) -> float:
        return sum(cpu_of(p.pid) for p in self.procs)

    def rss_kib(self) -> int:
        return sum(rss_kib(p.pid) for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> EchoServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def core_ticks() -> dict[int, tuple[int, int]]:
    """Per core (busy, total) clock ticks since boot, from /proc/stat (user, nice, system, steal)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
                total = sum(ticks)
                # busy in processes (and stolen by the hypervisor); interrupt and softirq time (much
                # of loopback TCP) is nobody's process time, so it is left out of the noise figure
                out[int(name[3:])] = (ticks[0] + ticks[1] + ticks[2] + ticks[7], total)
    return out


class ServerMeter:
    """The servers' share of a core over an interval (1.0 = one core fully busy), and how busy
    each core was in total (everybody's processes): the machine's noise."""

    def __init__(self, servers: EchoServers) -> None:
        self.servers = servers
        self.cpu0 = servers.cpu()
        self.ticks0 = core_ticks()
        self.t0 = time.perf_counter()

    def share(self) -> float:
        wall = time.perf_counter() - self.t0
        return (self.servers.cpu() - self.cpu0) / wall if wall > 0 else 0.0

    def core_busy(self) -> dict[int, float]:
        now = core_ticks()
        return {
            c: (now[c][0] - b0) / max(1, now[c][1] - t0) for c, (b0, t0) in self.ticks0.items() if c in now
        }

    def others(self, client_share: float) -> float:
        """CPU share of both cores taken by processes other than the client and the servers (noise)."""
        busy = self.core_busy()
        client_core, server_core = cores()
        used = busy.get(client_core, 0.0) + (
            busy.get(server_core, 0.0) if server_core != client_core else 0.0
        )
        return max(0.0, used - client_share - self.share())


# --- arguments and output ---------------------------------------------------------------------


def common_args(parser: argparse.ArgumentParser, seconds: float = 3.0, rounds: int = 3) -> None:
    parser.add_argument(
        "--seconds", type=float, default=seconds, help=f"measured time per run (default {seconds:g})"
    )
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up before measuring (default 0.5)")
    parser.add_argument(
        "--rounds", type=int, default=rounds, help=f"alternating rounds per tool (default {rounds})"
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def median_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over rounds."""
    keys = rows[0].keys()
    return {k: statistics.median(r[k] for r in rows) for k in keys}


def machine() -> dict[str, Any]:
    load1 = os.getloadavg()[0]
    return {"cores": os.cpu_count(), "loadavg_1m_at_start": round(load1, 2), "python": sys.version.split()[0]}


def emit(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))


def say(args: argparse.Namespace, text: str) -> None:
    """Progress and figures as text (to stderr under --json, so stdout stays one JSON object)."""
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


@contextmanager
def timed() -> Iterator[list[float]]:
    """Yields [cpu, wall] filled in at exit with this process's CPU and wall seconds."""
    box = [0.0, 0.0]
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        yield box
    finally:
        box[0], box[1] = time.process_time() - c0, time.perf_counter() - t0


async def measure(
    coros: list[Awaitable[None]],
    count: Callable[[], int],
    stop: Callable[[], None],
    warmup: float,
    seconds: float,
    meter_of: Callable[[], ServerMeter],
    *,
    drain_s: float = 60.0,
) -> tuple[int, float, float, dict[str, float]]:
    """Run ``coros`` and measure ``count()`` over ``seconds`` after ``warmup``; then ``stop()`` them.

    Returns (operations, client CPU s, wall s, CPU shares ``client_cpu``/``server_cpu``/``others_cpu``),
    the part every row's script shares; each script names its own rates.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    await asyncio.sleep(warmup)
    meter = meter_of()
    n0, c0, t0 = count(), time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    n, cpu, wall = count() - n0, time.process_time() - c0, time.perf_counter() - t0
    server = meter.share()
    stop()
    await asyncio.wait_for(asyncio.gather(*tasks), drain_s)
    shares = {"client_cpu": cpu / wall, "server_cpu": server, "others_cpu": meter.others(cpu / wall)}
    return n, cpu, wall, shares
