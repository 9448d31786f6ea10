"""Think time drawn from a distribution (issue 16 §3): ``sleep: {min, max}``, ``{mean,
distribution: exponential}``, ``{mean, stddev, distribution: normal}``; reproducible per user with
``--seed`` (``runner.scenario.draws``), whatever the workers; mistakes refused with their line."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import scaled

from runner.cli import main
from runner.errors import ScenarioError
from runner.loader import load_scenario_text
from runner.scenario.draws import unit_draw
from runner.steps.sleep import SleepStep

Arun = Callable[[Callable[[], Awaitable[Any]]], Any]

STEP_HEAD = (
    "name: think\ntarget: embedded\nconnections: {main: {url: /echo, timeout: 5s}}\nsteps:\n  - open: main\n"
)


def _step(sleep: str) -> SleepStep:
    scenario = load_scenario_text(STEP_HEAD + f"  - sleep: {sleep}\n  - close: main\n", file="t.yaml")
    step = scenario.steps[1]
    assert isinstance(step, SleepStep)
    return step


def _waits(step: SleepStep, n: int = 20_000) -> list[float]:
    return [step.wait_s(unit_draw(11, user, k)) for user in range(1, 21) for k in range(n // 20)]


def test_uniform_waits_cover_min_to_max_evenly() -> None:
    waits = _waits(_step("{min: 1s, max: 3s}"))
    assert 1.0 <= min(waits) < 1.01 and 2.99 < max(waits) < 3.0
    assert statistics.mean(waits) == pytest.approx(2.0, abs=0.02)
    assert statistics.pstdev(waits) == pytest.approx(2 / math.sqrt(12), rel=0.03)
    quarters = [sum(1 for w in waits if 1 + q * 0.5 <= w < 1.5 + q * 0.5) for q in range(4)]
    assert all(abs(c - 5000) < 300 for c in quarters), quarters


def test_exponential_waits_have_their_mean_and_memoryless_tail() -> None:
    waits = _waits(_step("{mean: 2s, distribution: exponential}"))
    assert statistics.mean(waits) == pytest.approx(2.0, rel=0.04)
    assert statistics.median(waits) == pytest.approx(2.0 * math.log(2), rel=0.05)
    beyond_4 = sum(w > 4 for w in waits) / len(waits)  # e^-2
    assert beyond_4 == pytest.approx(math.exp(-2), abs=0.01)
    capped = _waits(_step("{mean: 2s, max: 3s}"))  # mean alone says exponential
    assert max(capped) == 3.0 and min(capped) >= 0


def test_normal_waits_have_their_mean_and_spread_clamped_at_zero() -> None:
    waits = _waits(_step("{mean: 2s, stddev: 500ms, distribution: normal}"))
    assert statistics.mean(waits) == pytest.approx(2.0, abs=0.02)
    assert statistics.pstdev(waits) == pytest.approx(0.5, rel=0.04)
    wide = _waits(_step("{mean: 100ms, stddev: 1s}"))  # stddev says normal; half would be < 0
    assert min(wide) == 0.0 and sum(w == 0.0 for w in wide) / len(wide) == pytest.approx(0.46, abs=0.03)


def test_draws_differ_between_users_and_seeds_and_repeat_for_the_same() -> None:
    first = [unit_draw(5, 1, k) for k in range(1000)]
    assert first == [unit_draw(5, 1, k) for k in range(1000)]
    assert abs(statistics.correlation(first, [unit_draw(5, 2, k) for k in range(1000)])) < 0.1
    assert abs(statistics.correlation(first, [unit_draw(6, 1, k) for k in range(1000)])) < 0.1
    assert abs(statistics.correlation(first[:-1], first[1:])) < 0.1


@pytest.mark.parametrize(
    ("sleep", "message"),
    [
        ("{min: 1s}", "t.yaml:6:12: steps[1].sleep: a uniform sleep needs max (e.g. {min: 1s, max: 3s})"),
        ("{min: 3s, max: 1s}", "t.yaml:6:27: steps[1].sleep.max: max (1s) is less than min (3s)"),
        (
            "{mean: 2s, distribution: exponential, stddev: 1s}",
            "t.yaml:6:50: steps[1].sleep.stddev: 'stddev' has no meaning for a exponential sleep",
        ),
        ("{distribution: normal, mean: 1s}", "t.yaml:6:12: steps[1].sleep: a normal sleep needs stddev"),
        ("{mean: 0s}", "t.yaml:6:19: steps[1].sleep.mean: a exponential sleep needs a mean above 0"),
        (
            "{min: 1s, max: 2s, distrbution: uniform}",
            "t.yaml:6:31: steps[1].sleep.distrbution: unknown key 'distrbution', did you mean "
            "'distribution'?",
        ),
        (
            "{min: 1s, max: 2s, distribution: gaussian}",
            "t.yaml:6:45: steps[1].sleep.distribution: unknown value 'gaussian' (one of: uniform, "
            "exponential, normal)",
        ),
    ],
)
def test_a_sleep_that_cannot_be_drawn_is_refused_with_its_line(sleep: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(STEP_HEAD + f"  - sleep: {sleep}\n  - close: main\n", file="t.yaml")
    text = str(info.value)
    assert message in text, text


THINK = """\
name: think
target: embedded
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - repeat:
      times: 6
      steps:
        - sleep: {min: 5ms, max: 250ms}
  - close: main
"""


def _sleeps(tmp_path: Path, name: str, *args: str, text: str = THINK) -> tuple[dict[str, float], int | None]:
    path = tmp_path / "think.yaml"
    path.write_text(text)
    out = tmp_path / f"{name}.json"
    code = main(["run", str(path), "--json", str(out), "--report-dir", "", "-q", *args])
    doc = json.loads(out.read_text())
    assert code == 0, doc["error"]
    sleep = next(s for s in doc["steps"] if s["kind"] == "sleep")
    return sleep["latency_ms"], doc["settings"].get("seed")


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """The same waits, but for the event loop's lateness: a few milliseconds on the shortest and
    the median wait, and on the mean, which one wake-up late by tens of milliseconds on a busy
    machine moves by a little more."""
    return abs(a["min"] - b["min"]) < 4 and abs(a["p50"] - b["p50"]) < 4 and abs(a["mean"] - b["mean"]) < 8


def test_the_same_seed_gives_the_same_think_times(tmp_path: Path) -> None:
    """A run without --seed reports the seed it drew from; --seed with it replays the waits;
    another seed gives others."""
    first, seed = _sleeps(tmp_path, "first")
    assert isinstance(seed, int)
    again, replayed = _sleeps(tmp_path, "again", "--seed", str(seed))
    assert replayed == seed and _same(first, again), (first, again)
    other, _ = _sleeps(tmp_path, "other", "--seed", str(seed + 1))
    assert not _same(first, other), (first, other)


def test_the_seed_gives_the_same_waits_over_two_workers(tmp_path: Path) -> None:
    """Each user draws by its own number: 6 users x 2 iterations wait the same in one worker
    as in two (the seed travels to the workers)."""
    load = THINK.replace("times: 6", "times: 3") + "load: {vus: 6, iterations: 2}\n"
    one, _ = _sleeps(tmp_path, "one", "--seed", "42", "--workers", "1", text=load)
    two, _ = _sleeps(tmp_path, "two", "--seed", "42", "--workers", "2", text=load)
    assert _same(one, two), (one, two)


def test_a_file_seed_is_used_and_fixed_sleeps_report_none(tmp_path: Path) -> None:
    _, seed = _sleeps(tmp_path, "file", text=THINK.replace("name: think\n", "name: think\nseed: 7\n"))
    assert seed == 7
    _, none = _sleeps(tmp_path, "fixed", text=THINK.replace("{min: 5ms, max: 250ms}", "5ms"))
    assert none is None


def test_sleeping_users_share_one_timer_and_wake_on_time(arun: Arun) -> None:
    """``TimerHeap.sleep`` (what the ``sleep`` step waits on): 300 waits of 20-200 ms, some cancelled on
    the way, each woken not before its deadline and within a few ms of it (as
    ``asyncio.sleep`` would be), with one timer armed at a time and nothing left at the end."""
    import asyncio
    import random
    import time

    from runner.client.timers import TimerHeap

    async def body() -> None:
        sleeper = TimerHeap(asyncio.get_running_loop())
        draw = random.Random(5)
        waits = [draw.uniform(0.02, 0.2) for _ in range(300)]
        late: list[float] = []

        async def one(i: int, wait: float) -> None:
            start = time.monotonic()
            await sleeper.sleep(wait)
            late.append(time.monotonic() - start - wait)

        tasks = [asyncio.ensure_future(one(i, w)) for i, w in enumerate(waits)]
        await asyncio.sleep(0.01)
        assert sleeper.pending == 300
        for task in tasks[::10]:  # cancelled while sleeping: the others are not disturbed
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(late) == 270
        # uvloop's timers work in whole ms from the loop's cached clock: asyncio.sleep itself
        # wakes up to 1.3 ms early there (measured with this test's waits)
        assert min(late) >= -0.0025, min(late)
        assert max(late) < scaled(0.05), max(late)
        assert sleeper.pending == 0

    arun(body)
