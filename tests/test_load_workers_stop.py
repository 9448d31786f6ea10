"""A stop (Ctrl-C) during a mass open over worker processes keeps what the workers measured.

Found at 50,000 connections with no ramp: every user of a worker was started in one go, so each
user's first step ran in one turn of the worker's loop; with crowded source ports each ``bind``
took milliseconds in the kernel and that turn lasted minutes. The worker sent no per-second delta
and did not see the stop, the parent killed it after its grace, and the report held 0 opens.

Reproduced small: a ``bind`` that blocks 5 ms (a ``socket.socket`` subclass installed in the
workers through ``sitecustomize``), 2 workers x 1,200 users with a source address, SIGINT 1 s
after the start, and the parent's patience after the grace cut to 3 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from runner.load import LoadOverrides
from runner.load.run import prepare
from runner.load.workers import WorkerPool
from runner.loader import load_scenario
from runner.results.codec import encode
from runner.results.result import RunResult

SLOW_BIND = """
import socket
import time

_socket = socket.socket


class _SlowBindSocket(_socket):
    def bind(self, address):
        time.sleep(0.005)  # the kernel searching a crowded ephemeral port range
        return super().bind(address)


socket.socket = _SlowBindSocket
"""

SCENARIO = """
name: mass open then stop
connections:
  main:
    url: /echo
    timeout: 30s
steps:
  - open: main
  - sleep: 3600s
  - close: main
load:
  vus: 2400
  duration: 600s
  graceful_stop: 1s
"""


def test_sigint_during_mass_open_keeps_workers_measurements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while 2 workers start 2,400 users at once (each bind blocking 5 ms: 6 s of starts
    per worker): the workers answer the stop in time (none killed, none incomplete) and every
    open they made is in the report."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(SLOW_BIND))
    paths = [str(site), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    started = asyncio.Event()

    class _Pool(WorkerPool):
        def start(self) -> int:  # the parent has sent the shared start, 0.1 s ahead
            start_ns = super().start()
            started.set()
            return start_ns

    path = tmp_path / "mass_open.yaml"
    path.write_text(SCENARIO)
    overrides = LoadOverrides(source_addresses=("127.0.0.1",))
    scenario, limits = prepare(load_scenario(str(path), target="embedded"), overrides, 2, "embedded")

    async def main() -> tuple[RunResult, float]:
        pool = _Pool(
            scenario,
            limits,
            target="embedded",
            overrides=overrides,
            variables=None,
            progress=None,
            handle_signals=True,
            end_margin_s=3.0,  # the parent's patience after the grace
        )
        task = asyncio.ensure_future(pool.run())
        await asyncio.wait_for(started.wait(), 60)
        await asyncio.sleep(1.1)  # the start is 0.1 s ahead, then 1 s of mass open
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
        result = await asyncio.wait_for(task, 60)
        return result, time.monotonic() - sent

    result, after_signal = asyncio.run(main())
    load = encode(result)["settings"]["load"]
    assert result.interrupted
    assert load["incomplete_workers"] == [], result.error
    assert "died" not in result.error, result.error
    opens = next(s for s in result.steps if s.kind == "open")
    assert opens.ok > 0, f"the opens the workers made before the stop are lost: {result.error}"
    assert opens.failures == 0, opens
    # the stop ended the mass start: far fewer than 2,400 users began
    assert opens.count < 2400, opens.count
    assert after_signal < 1.0 + 3.0, after_signal  # within the grace and the parent's margin
