"""Shared test helpers: run coroutines on uvloop and on asyncio's own loop, scaled time-outs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

#: Multiply every time-out in tests by this factor on slow machines.
TIMEOUT_FACTOR = float(os.environ.get("WSLOAD_TIMEOUT_FACTOR", "1"))


def scaled(seconds: float) -> float:
    """A test time-out scaled for slow machines."""
    return seconds * TIMEOUT_FACTOR


def run_on(kind: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the named loop kind ("uvloop" or "asyncio")."""
    if kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    with asyncio.Runner() as runner:
        return runner.run(coro)


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both event loops the engine supports."""
    return str(request.param)


@pytest.fixture
def arun(loop_kind: str) -> Callable[[Callable[[], Awaitable[T]]], T]:
    """Run an async test body on the parametrised loop: ``arun(lambda: body())``."""

    def _run(factory: Callable[[], Awaitable[T]]) -> T:
        async def _main() -> T:
            return await asyncio.wait_for(factory(), scaled(60))

        return run_on(loop_kind, _main())

    return _run


# --- the Node `ws` reference server -------------------------------------------------------------

NODE_DIR = Path(__file__).resolve().parent / "node"


@contextlib.contextmanager
def node_ws_server() -> Iterator[str]:
    """Start a server on the Node ``ws`` library (tests/node/server.js): ``/echo``,
    ``/stall?every=MS&for=MS`` (the whole server stalls), ``/room/NAME`` (broadcast); yields
    ``ws://127.0.0.1:PORT``. Its ``ws`` package comes from npm (tests/run.sh installs it; it is
    installed here if missing): never skipped."""
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_DIR), "--silent", "--no-audit", "--no-fund"],
            check=True,
            timeout=300,
        )
    proc = subprocess.Popen(
        ["node", str(NODE_DIR / "server.js"), "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"the Node ws server did not start: {line!r}"
        yield f"ws://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def node_ws_url() -> Iterator[str]:
    """A Node ``ws`` server shared by the session's tests (see ``node_ws_server``)."""
    with node_ws_server() as url:
        yield url
