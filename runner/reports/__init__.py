"""Reports: pure functions of a finished ``RunResult`` (console, JSON, JUnit), written atomically,
with secrets masked in every one."""

from __future__ import annotations

__all__: list[str] = []
