"""The live progress line of a load run, as a user watching a CI log reads it."""

from __future__ import annotations

import io
import re
from collections.abc import Awaitable, Callable
from typing import Any

from runner.load import LoadOverrides, run_load
from runner.load.monitor import Progress
from runner.loader import load_scenario_text

SCENARIO = """
name: progress
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - repeat:
      times: 1000
      steps:
        - write: {connection: main, text: ping}
        - read: main
        - sleep: 5ms
  - close: main
"""

LINE = re.compile(r"msgs/s (?P<msgs>[\d,]+)  errors (?P<errors>[\d,]+)  read p99 (?P<p99>\S+)")


def test_progress_shows_the_message_rate_and_p99_of_a_steady_run(
    arun: Callable[[Callable[[], Awaitable[Any]]], Any],
) -> None:
    """Four users sending all the time: after the first second every progress line shows a
    message rate above zero, no errors, and a read p99 (never a stale 0 or '-')."""
    scenario = load_scenario_text(SCENARIO, "progress.yaml")
    out = io.StringIO()
    result = arun(
        lambda: run_load(
            scenario,
            overrides=LoadOverrides(vus=4, duration_s=4.0),
            workers=1,
            progress=Progress(out, tty=False, every_s=0.0),
            handle_signals=False,
        )
    )
    assert result.passed
    lines = [m for m in map(LINE.search, out.getvalue().splitlines()) if m]
    later = [m for m in lines if float(m.string.split()[1].rstrip("s")) >= 1.5]
    assert len(later) >= 2, out.getvalue()
    for m in later:
        assert int(m["msgs"].replace(",", "")) > 0, m.string
        assert m["errors"] == "0" and m["p99"].endswith("ms"), m.string
