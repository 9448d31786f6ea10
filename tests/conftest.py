"""Shared test helpers: run coroutines on uvloop and on asyncio's own loop, scaled time-outs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import WSMsgType, web

T = TypeVar("T")

# --- tiers ----------------------------------------------------------------------------------------

#: Every test file's tier (``pytest -m unit`` runs in seconds; ``-m "not run"`` skips whole runs):
#: ``unit``: pure functions and in-process parsing, no socket and no process; ``socket``: the
#: connection layer and the embedded server against real servers on 127.0.0.1; ``run``: whole
#: runs (the CLI, the engine, load, workers, reports) against real servers. A new file must be
#: listed here: collection stops and says so otherwise.
TIERS: dict[str, str] = {
    **dict.fromkeys(
        (
            "test_connect_options", "test_direct_receive", "test_expect", "test_frames",
            "test_load_plan", "test_loader", "test_loader_fuzz", "test_metrics", "test_metrics_cmd",
            "test_results", "test_scenarios_valid", "test_templates", "test_units",
            "test_validate_cli", "test_workers_reducer",
        ),
        "unit",
    ),
    **dict.fromkeys(
        (
            "test_client_batching", "test_client_codes", "test_client_connect", "test_close_answer",
            "test_client_request_checks", "test_compat", "test_fast_paths", "test_frame_decoder",
            "test_hostile_servers", "test_server", "test_tls",
        ),
        "socket",
    ),
    **dict.fromkeys(
        (
            "test_bad_input", "test_callback_rounds", "test_cli_usage", "test_cluster",
            "test_coordinated_omission",
            "test_faults", "test_generator_health", "test_html_report", "test_load_cli",
            "test_load_engine", "test_load_workers_stop", "test_merge", "test_progress",
            "test_prometheus", "test_pytest_plugin", "test_receive", "test_reference_servers",
            "test_report_cmd", "test_codec", "test_data_files", "test_every", "test_fanout",
            "test_dashboard", "test_har_import", "test_parallel", "test_populations", "test_reports",
            "test_run_cli", "test_run_engine", "test_run_signals", "test_secret_registry",
            "test_secrets", "test_shard", "test_step_kinds", "test_think_time", "test_verdict",
        ),
        "run",
    ),
}  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its file's tier (``TIERS``)."""
    unlisted = set()
    for item in items:
        stem = item.path.stem
        if not stem.startswith("test_") or item.path.parent.name != "tests":
            continue  # (a scenario file collected by wsload's own plugin, a helper module)
        tier = TIERS.get(stem)
        if tier is None:
            unlisted.add(item.path.name)
            continue
        item.add_marker(getattr(pytest.mark, tier))
    if unlisted:
        raise pytest.UsageError(
            f"tests without a tier: {sorted(unlisted)}; list them in TIERS (tests/conftest.py)"
        )


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


# --- the aiohttp reference server ---------------------------------------------------------------


@contextlib.contextmanager
def aiohttp_server() -> Iterator[str]:
    """A WebSocket server on aiohttp (its own frame parser and writer, not websockets'), in a
    thread of its own: ``/echo`` (every message back, same opcode; pings answered by aiohttp),
    ``/close?code=4001&reason=bye`` (closes so after the first message); yields
    ``ws://127.0.0.1:PORT``."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 << 20)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def close(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        reason = request.query.get("reason", "").encode()
        await ws.close(code=int(request.query.get("code", "1000")), message=reason)
        return ws

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.add_routes([web.get("/echo", echo), web.get("/close", close)])
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="aiohttp-server", daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=scaled(10))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=scaled(10))
        loop.close()
