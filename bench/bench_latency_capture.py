"""wsload's read latency and response time against an independent clock: packet time stamps.

A Node ``ws`` echo server (tests/node/server.js, a protocol implementation we did not write) on one
core, wsload on the other, and ``tcpdump`` recording every packet of
the run. From the capture, each request frame (client to server, masked; its JSON carries
``vu`` and ``seq``) and the echo answering it (server to client) are paired per TCP stream, and
the **wire round trip** is the time between the packet that completed the request and the packet
that completed the answer: the server plus the network, nothing of the client.

For each load it prints, side by side, the percentiles of:

- ``wire``: the capture's round trips (the independent reference);
- ``latency``: wsload's read latency, from the request handed to the kernel to the answer
  parsed: the wire round trip plus the time the answer waited in our socket for our loop;
- ``response``: wsload's response time, from the write step's start to the read's end: what the
  scenario's code saw, our own queueing included (at saturation: the connection's cycle);
- ``cycle``: connections / round trips per second, the mean time between a connection's
  requests, which the response time's mean must match in a saturated closed loop.

    python bench/bench_latency_capture.py                 # low (2 users, 10 ms pace) and high (100 users)
    python bench/bench_latency_capture.py --seconds 8 --json

Needs ``tcpdump`` (Debian: ``apt-get install tcpdump``), root or CAP_NET_RAW, and the Node ``ws``
package (``npm ci --prefix tests/node``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "node" / "server.js"

SCENARIO = """\
name: capture {name}
connections:
  main: {{url: /echo, timeout: 10s}}
defaults: {{read_timeout: 10s}}
steps:
  - open: main
  - repeat:
      times: 1000000
      index: seq
      steps:
        - write:
            connection: main
            json: {{vu: "{{{{ vu }}}}", seq: "{{{{ seq }}}}", pad: xxxxxxxxxxxxxxxxxxxxxx}}
        - read: {{connection: main, match: {{json: {{seq: "{{{{ seq }}}}"}}}}}}
{pause}  - close: main
load: {{vus: {vus}, duration: {seconds}s, hold: true, graceful_stop: 1s}}
"""


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}

    def at(p: float) -> float:
        return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]

    return {
        "p50": at(50),
        "p90": at(90),
        "p99": at(99),
        "max": values[-1],
        "mean": sum(values) / len(values),
        "n": float(len(values)),
    }


def _packets(path: Path) -> Iterator[tuple[float, int, int, bytes]]:
    """(time s, source port, destination port, TCP payload) of each IPv4 TCP packet of a pcap."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    link = struct.unpack_from(endian + "I", data, 20)[0]
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from(endian + "IIII", data, offset)
        offset += 16
        frame = data[offset : offset + caplen]
        offset += caplen
        t = sec + frac / (1e9 if nano else 1e6)
        # Ethernet, Linux cooked v1 and v2 headers (capturing on "any": loopback is not always
        # visible as "lo" in a container)
        ip = frame[{1: 14, 113: 16, 276: 20}.get(link, 0) :]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        tcp = ip[ihl:total]
        sport, dport = struct.unpack_from(">HH", tcp)
        doff = (tcp[12] >> 4) * 4
        yield t, sport, dport, bytes(tcp[doff:])


def _frames(buffer: bytearray) -> Iterator[bytes]:
    """Whole WebSocket frames' payloads at the start of ``buffer`` (consumed), unmasked."""
    while len(buffer) >= 2:
        length = buffer[1] & 127
        masked = buffer[1] & 128
        head = 2
        if length == 126:
            if len(buffer) < 4:
                return
            length, head = struct.unpack_from(">H", buffer, 2)[0], 4
        elif length == 127:
            if len(buffer) < 10:
                return
            length, head = struct.unpack_from(">Q", buffer, 2)[0], 10
        key = b""
        if masked:
            key, head = bytes(buffer[head : head + 4]), head + 4
        if len(buffer) < head + length:
            return
        payload = bytes(buffer[head : head + length])
        del buffer[: head + length]
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        yield payload


def wire_round_trips(path: Path, server_port: int) -> list[float]:
    """Request -> echo times (ms) from the capture: per TCP stream, HTTP upgrade skipped."""
    sent: dict[tuple[int, str], float] = {}
    streams: dict[tuple[int, bool], bytearray] = {}
    upgraded: set[tuple[int, bool]] = set()
    out: list[float] = []
    for t, sport, dport, payload in _packets(path):
        if not payload:
            continue
        to_server = dport == server_port
        client = sport if to_server else dport
        key = (client, to_server)
        buffer = streams.setdefault(key, bytearray())
        buffer += payload
        if key not in upgraded:  # the HTTP upgrade request or response, up to its blank line
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                continue
            del buffer[: end + 4]
            upgraded.add(key)
        for frame in _frames(buffer):
            try:
                seq = str(json.loads(frame)["seq"])
            except (ValueError, KeyError, TypeError):
                continue
            if to_server:
                sent[(client, seq)] = t
            elif (client, seq) in sent:
                out.append((t - sent.pop((client, seq))) * 1000)
    return out


def run(name: str, vus: int, pace_ms: float, seconds: float, tmp: Path) -> dict[str, object]:
    scenario = tmp / f"{name}.yaml"
    pause = f"        - sleep: {pace_ms}ms\n" if pace_ms else ""
    scenario.write_text(SCENARIO.format(name=name, vus=vus, seconds=seconds, pause=pause))
    server = subprocess.Popen(
        ["taskset", "-c", "1", "node", str(SERVER), "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    port = int(server.stdout.readline().split()[1])
    pcap = tmp / f"{name}.pcap"
    dump = subprocess.Popen(
        ["tcpdump", "-i", "any", "-s", "1024", "-B", "262144", "-U", "-w", str(pcap), f"tcp port {port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # tcpdump is listening
    report = tmp / f"{name}.json"
    try:
        subprocess.run(
            [
                "taskset",
                "-c",
                "0",
                sys.executable,
                "-m",
                "runner",
                "run",
                str(scenario),
                "--target",
                f"ws://127.0.0.1:{port}",
                "--workers",
                "1",
                "--json",
                str(report),
                "--report-dir",
                "",
                "-q",
            ],
            check=False,
            timeout=seconds + 60,
            cwd=ROOT,
        )
    finally:
        time.sleep(0.5)
        dump.send_signal(signal.SIGINT)
        _, err = dump.communicate(timeout=30)
        server.kill()
        server.wait()
    doc = json.loads(report.read_text())
    read = next(s for s in doc["steps"] if s["kind"] == "read")
    wire = wire_round_trips(pcap, port)
    rate = read["count"] / doc["duration_s"]
    dropped = next((line for line in err.splitlines() if "dropped by kernel" in line), "")
    return {
        "name": name,
        "vus": vus,
        "round_trips_per_s": round(rate),
        "wire_ms": _percentiles(wire),
        "latency_ms": read["latency_ms"],
        "response_ms": read["response_ms"],
        "cycle_ms": vus / rate * 1000 if rate else None,
        "capture": dropped,
        "generator": doc["settings"]["load"]["generator"]["workers"][0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("tcpdump") is None:
        print("tcpdump is needed (apt-get install tcpdump)", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="wsload-capture-") as tmp:
        for name, vus, pace in (("low", 2, 10.0), ("high", 100, 0.0)):
            print(f"running {name}: {vus} users...", file=sys.stderr)
            results.append(run(name, vus, pace, args.seconds, Path(tmp)))
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(
            f"{r['name']}: {r['vus']} users, {r['round_trips_per_s']:,} round trips/s, "
            f"capture: {r['capture'] or 'ok'}"
        )
        gen = r["generator"]
        print(f"  generator cpu max {gen['cpu_max']:.0%}, saturated {gen['saturated_seconds']} s")
        print(f"  {'':10} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}  (ms)")
        for label, key in (("wire", "wire_ms"), ("latency", "latency_ms"), ("response", "response_ms")):
            v = r[key]
            print(f"  {label:10} {v['p50']:8.3f} {v['p90']:8.3f} {v['p99']:8.3f} {v['mean']:8.3f}")
        print(f"  cycle (users / rate): {r['cycle_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
