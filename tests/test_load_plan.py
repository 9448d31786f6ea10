"""The ramp/stage plan is pure: these tests need no event loop and no network."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.scenario.model import LoadSpec, Stage
from runner.scenario.plan import VuChange, closed_plan, open_starts, plan_duration, shard_count, shard_starts


def test_closed_without_ramp_starts_everyone_at_once() -> None:
    """All virtual users start at 0 and stop at the end of the duration."""
    assert closed_plan(LoadSpec(vus=3, duration_s=10)) == (VuChange(0.0, 3), VuChange(10.0, 0))


def test_closed_linear_ramp_spaces_starts_evenly() -> None:
    """A ramp of 4 users over 4 s starts one user a second, from 0."""
    plan = closed_plan(LoadSpec(vus=4, duration_s=10, ramp_up_s=4))
    assert [(c.at_s, c.vus) for c in plan] == [(0.0, 1), (1.0, 2), (2.0, 3), (3.0, 4), (10.0, 0)]


def test_closed_iterations_only_has_no_stop() -> None:
    """With only an iteration count, users start and the plan sets no end time."""
    assert closed_plan(LoadSpec(vus=2, iterations=5)) == (VuChange(0.0, 2),)
    assert plan_duration(LoadSpec(vus=2, iterations=5)) is None


def test_closed_stages_ramp_up_hold_and_down() -> None:
    """Stages move linearly to their targets; ramp-down stops users at the end of their slice."""
    plan = closed_plan(LoadSpec(stages=(Stage(2, 4), Stage(3, 4), Stage(2, 0))))
    assert [c.vus for c in plan] == [1, 2, 3, 4, 3, 2, 1, 0]
    assert plan[3].at_s == 1.5 and plan[4].at_s == 5.5 and plan[-1].at_s == 7.0
    assert plan_duration(LoadSpec(stages=(Stage(2, 4), Stage(3, 4), Stage(2, 0)))) == 7


def test_open_constant_rate_counts_starts_exactly() -> None:
    """10/s for 2 s gives 20 starts at exact 0.1 s steps, none at the end boundary."""
    starts = list(open_starts(LoadSpec(model="open", rate=10, duration_s=2)))
    assert len(starts) == 20
    assert all(math.isclose(t, i / 10, abs_tol=1e-9) for i, t in enumerate(starts))


def test_open_ramp_follows_the_integral_of_the_rate() -> None:
    """A ramp 0→100/s over 1 s then 1 s at 100/s gives 50 + 100 starts."""
    starts = list(open_starts(LoadSpec(model="open", rate=100, ramp_up_s=1, duration_s=2)))
    assert len(starts) == 150
    assert sum(1 for t in starts if t < 1.0) == 50


def test_open_iterations_bound_the_starts() -> None:
    """An open run with ``iterations`` and no duration issues exactly that many starts."""
    assert len(list(open_starts(LoadSpec(model="open", rate=1000, iterations=7)))) == 7


def test_open_rate_stages() -> None:
    """Rate stages ramp from the previous rate: 0→20/s over 1 s, then hold 20/s for 1 s."""
    load = LoadSpec(model="open", rate=0, stages=(Stage(1, 20), Stage(1, 20)))
    assert len(list(open_starts(load))) == 30


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(1, 500), duration=st.floats(0.1, 5), shards=st.integers(1, 7))
def test_shards_add_up_to_the_whole_plan(rate: float, duration: float, shards: int) -> None:
    """The shards of an open plan together hold exactly the starts of the whole plan."""
    load = LoadSpec(model="open", rate=rate, duration_s=duration)
    whole = list(open_starts(load))
    parts = sorted(t for k in range(shards) for t in shard_starts(open_starts(load), k, shards))
    assert parts == whole


@given(total=st.integers(0, 100_000), shards=st.integers(1, 64))
def test_shard_counts_add_up_and_differ_by_at_most_one(total: int, shards: int) -> None:
    """VU shares across workers sum to the total and are as even as possible."""
    counts = [shard_count(total, k, shards) for k in range(shards)]
    assert sum(counts) == total
    assert max(counts) - min(counts) <= 1
