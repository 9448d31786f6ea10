"""Shared test helpers: run coroutines on uvloop and on asyncio's own loop, scaled time-outs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
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
