"""Pure tests of the recorders: HDR percentiles, bounded error groups, exact merge across workers."""

from __future__ import annotations

import json
import random

from runner.results.recorders import (
    HIGHEST_US,
    LOWEST_US,
    MAX_ERROR_GROUPS,
    OTHER_ERRORS,
    LatencyHistogram,
    RunRecorder,
    new_hdr,
)


def _fill(rec: RunRecorder, samples: list[int], *, fail_every: int = 0, offset: int = 0) -> None:
    step = rec.step("read main", "read", "main", 12)
    for i, ns in enumerate(samples, offset):
        bad = bool(fail_every) and i % fail_every == 0
        step.record(
            ok=not bad,
            rc=-2 if bad else 0,
            rc_is_success=not bad,
            latency_ns=ns,
            error="time-out: no message within 1s" if bad else None,
        )
        rec.timeseries.step(i % 3, not bad, -2 if bad else None, ns)


def test_percentiles_from_histogram_with_exact_max_and_mean() -> None:
    """Percentiles come from the HDR histogram (3 significant digits); max and mean are exact."""
    hist = LatencyHistogram()
    for ms in range(1, 101):
        hist.record_ns(ms * 1_000_000)
    p = hist.summary()
    assert p is not None
    assert abs(p.p50 - 50) <= 0.05 and abs(p.p99 - 99) <= 0.1
    assert p.max == 100.0 and p.mean == 50.5 and p.min == 1.0 and p.count == 100


def test_out_of_range_values_are_clamped() -> None:
    """Values under 1 us or over 1 h are clamped into the histogram instead of being lost."""
    hist = LatencyHistogram()
    hist.record_ns(10)
    hist.record_ns(2 * 3600 * 10**9)
    assert hist.hdr.get_total_count() == 2


def test_error_groups_are_bounded() -> None:
    """Distinct error messages beyond the bound are counted together, never dropped."""
    rec = RunRecorder()
    step = rec.step("open main", "open")
    for i in range(MAX_ERROR_GROUPS + 10):
        step.record(ok=False, rc=-1, rc_is_success=False, latency_ns=None, error=f"network error {i}")
    groups = step.error_groups()
    assert len(groups) == MAX_ERROR_GROUPS + 1
    assert (-1, OTHER_ERRORS, 10) in groups
    assert step.rc == {"-1": MAX_ERROR_GROUPS + 10}


def test_merge_equals_one_process() -> None:
    """Two workers' serialised recorders merge to exactly what one recorder of all samples holds."""
    rnd = random.Random(7)
    samples = [rnd.randint(50_000, 90_000_000) for _ in range(3000)]
    one = RunRecorder()
    _fill(one, samples, fail_every=7)
    a, b = RunRecorder(), RunRecorder()
    _fill(a, samples[:1000], fail_every=7)
    _fill(b, samples[1000:], fail_every=7, offset=1000)
    merged = RunRecorder.from_serialized(json.loads(json.dumps(a.serialize())))
    merged.merge(json.loads(json.dumps(b.serialize())))
    m, o = merged.steps["read main"], one.steps["read main"]
    assert m.count == o.count == 3000
    assert m.latency.summary() == o.latency.summary()
    assert m.latency.hdr.get_total_count() == 3000
    assert m.ok + m.failures == 3000
    assert sum(n for *_, n in m.error_groups()) == m.failures
    assert m.failures == o.failures and m.rc == o.rc
    assert merged.timeseries.serialize() == one.timeseries.serialize()


def test_failures_grouped_with_first_details() -> None:
    """Failure details are grouped by step and message, keeping the first expected/actual."""
    rec = RunRecorder()
    rec.add_failure("read main", 14, "expected text 'a', got 'b'", "a", "b")
    rec.add_failure("read main", 14, "expected text 'a', got 'b'", "a", "b")
    assert rec.serialize()["failures"] == [["read main", "expected text 'a', got 'b'", 14, "a", "b", 2]]


def test_connect_split_recorded_for_open() -> None:
    """Open steps keep TCP/TLS/upgrade histograms; TLS only when there was a handshake."""
    rec = RunRecorder()
    step = rec.step("open main", "open")
    step.record_connect(100_000, 0, 300_000)
    assert step.connect is not None
    assert step.connect["tcp"].count == 1 and step.connect["tls"].count == 0


def test_timeseries_keeps_old_seconds_compact() -> None:
    """Only the newest two seconds keep a live histogram; older ones are serialised, still exact."""
    from runner.results.recorders import TimeSeries

    series = TimeSeries()
    for second in range(10):
        for ms in (1, 2, 3):
            series.step(second, True, None, ms * 1_000_000)
    live = [s for s, b in series.seconds.items() if isinstance(b[4], LatencyHistogram)]
    assert live == [8, 9]
    series.step(3, False, -2, 4_000_000)  # a late sample for an old second revives it exactly
    entry = series.serialize()[3]
    assert entry["steps"] == 4 and entry["rc"] == {"-2": 1} and entry["latency"]["count"] == 4


def test_timeseries_samples_name_every_slot() -> None:
    """Each second read back by name: starts, ended iterations, steps, failures, return codes,
    messages, the read latency, the gauges (None where no one sampled them) and dropped starts."""
    from runner.results.recorders import TimeSeries

    series = TimeSeries()
    series.start(0)
    series.step(0, True, None, 3_000_000, message=True)
    series.step(0, False, -2, None)
    series.ended(0)
    series.dropped(1, 4)
    series.gauges(1, vus=5, connections=3, paused=1)
    first, second = series.samples()
    assert (first.t, first.starts, first.ended, first.steps, first.failures) == (0, 1, 1, 2, 1)
    assert first.rc == {"-2": 1} and first.messages == 1 and first.vus is None and first.dropped == 0
    assert isinstance(first.latency, LatencyHistogram) and first.latency.count == 1
    assert (second.t, second.vus, second.connections, second.paused, second.dropped) == (1, 5, 3, 1, 4)
    assert second.latency is None and second.steps == 0


def test_batched_samples_equal_one_by_one() -> None:
    """Buffered recording gives the same histogram as the library's own per-value recording."""
    from runner.results.recorders import new_hdr

    hist = LatencyHistogram()
    ref = new_hdr()
    for i in range(20_000):
        ns = (i * 7919 % 100_000) * 1000 + 1000
        hist.record_ns(ns)
        ref.record_value(ns // 1000)
    assert hist.hdr.get_total_count() == ref.get_total_count()
    assert all(hist.hdr.get_value_at_percentile(p) == ref.get_value_at_percentile(p) for p in (50, 99, 99.9))


def test_batched_recording_equals_record_value_per_sample() -> None:
    """The batched fold (counts added straight into the HDR buckets) leaves exactly the histogram
    that ``record_value`` per sample gives: every bucket, total, min, max and percentile, for
    latencies from below 1 us to beyond the 1 h ceiling (both clamped) and across many flushes."""
    rng = random.Random(7)
    samples = [int(rng.lognormvariate(mu, 2.0)) for mu in range(4, 32) for _ in range(1500)]
    samples += [-5, 0, 999, 1000, 2_047_999, 2_048_000, 3600 * 10**9, 3600 * 10**9 + 1, 10**18]
    rng.shuffle(samples)
    ours = LatencyHistogram()
    reference = new_hdr()
    for ns in samples:
        ours.record_ns(ns)
        reference.record_value(min(max(max(ns, 0) // 1000, LOWEST_US), HIGHEST_US))
    hdr = ours.hdr
    assert list(hdr.counts) == list(reference.counts)
    assert (hdr.total_count, hdr.min_value, hdr.max_value) == (
        reference.total_count,
        reference.min_value,
        reference.max_value,
    )
    for p in (1, 50, 90, 99, 99.9, 100):
        assert hdr.get_value_at_percentile(p) == reference.get_value_at_percentile(p)
    assert ours.count == len(samples) and ours.max_ns == 10**18


def test_a_histogram_takes_its_counts_memory_at_its_first_sample() -> None:
    """A step row that records nothing (a ws:// open's TLS phase, a step a held user never
    reaches) costs kilobytes, not an HDR histogram's ~190 KiB of counts each; the first sample
    makes them, and an empty histogram still reads, serialises and merges as empty."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rec = RunRecorder()
        steps = [rec.step(f"open c{i}", "open", f"c{i}", i) for i in range(10)]  # 4 histograms each
        empty = tracemalloc.get_traced_memory()[0] - before
        steps[0].latency.record_ns(2_000_000)
        steps[0].latency.settle()
        one = tracemalloc.get_traced_memory()[0] - before - empty
    finally:
        tracemalloc.stop()
    assert empty < 100 * 1024, f"10 unrecorded open steps took {empty / 1024:.0f} KiB"
    assert one > 100 * 1024  # the first sample made one histogram's counts
    idle = steps[1].latency
    assert idle.summary() is None and idle.count == 0 and idle.hdr.get_total_count() == 0
    assert idle.serialize()["hdr"] == ""
    merged = LatencyHistogram()
    merged.merge(idle.serialize())
    merged.merge(steps[0].latency.serialize())
    assert merged.count == 1 and merged.hdr.get_total_count() == 1
