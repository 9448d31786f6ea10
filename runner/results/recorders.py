"""Mutable recorders the engine fills while it runs; mergeable so workers' results combine exactly.

Latencies go into HDR histograms (``hdrhistogram``) in microseconds, 1 us .. 1 h, 3 significant
digits; percentiles come from them, never from a list of samples. Exact count, sum, min and max are
kept beside each histogram (the histogram's max is only "equivalent"), so means and maxima are exact.

``serialize()`` gives plain JSON-able data (histograms as compressed base64 HDR) and
``merge(other_serialized)`` adds another recorder's data: a worker process serialises its
``RunRecorder``, the parent merges them, and the totals are what one process would have recorded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from operator import floordiv
from typing import Any, NamedTuple

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

__all__ = [
    "HIGHEST_US",
    "MAX_ERROR_GROUPS",
    "MAX_FAILURE_GROUPS",
    "OTHER_ERRORS",
    "HealthRecorder",
    "LatencyHistogram",
    "LoadRecorder",
    "Percentiles",
    "QuickRow",
    "RunRecorder",
    "SecondCounts",
    "StepRecorder",
    "TimeSeries",
    "WorkerHealth",
]

LOWEST_US = 1
HIGHEST_US = 3600 * 1_000_000
SIGNIFICANT = 3
#: Distinct (rc, message) error groups kept per step; later distinct ones go to ``OTHER_ERRORS``.
MAX_ERROR_GROUPS = 50
#: Distinct (step, message) failure groups kept per run, with expected/actual of the first one.
MAX_FAILURE_GROUPS = 100
OTHER_ERRORS = "(other errors, not grouped)"
#: Message ids a step keeps for reach (``latency_from.id``) per process: ~100 bytes each, so at
#: most ~10 MB; ids beyond are counted in ``reach_overflow`` and left out of the reach figures.
MAX_REACH_IDS = 100_000
#: A socket's number in an error text ("socket 40 is closed"): one group per failure, not per
#: socket (a load run has thousands; the step already names the connection).
_SOCKET_LABEL = re.compile(r"\bsocket \d+(: )?")


def _socket_free(message: str) -> str:
    return _SOCKET_LABEL.sub(lambda m: "" if m.group(1) else "the socket", message)


PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p999", 99.9),
)


@dataclass(frozen=True, slots=True)
class Percentiles:
    """A latency summary in milliseconds."""

    count: int
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float
    mean: float
    min: float


def new_hdr() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT)


def _direct_index() -> tuple[int, int] | None:
    """``(sub-bucket count, half-count magnitude)`` when this ``hdrhistogram``'s bucket index of a
    value in microseconds is ``v`` below the sub-bucket count and ``((b + 1) << m) + (v >> b) -
    half`` above it (``b = v.bit_length() - log2(count)``), checked here against the library's
    own index on values across the whole range; None (use ``record_value``) if it is not."""
    hdr = new_hdr()
    try:
        if hdr.unit_magnitude != 0:
            return None
        count, mag = hdr.sub_bucket_count, hdr.sub_bucket_half_count_magnitude
        shift = count.bit_length() - 1
        half = count >> 1
        probe = [*range(1, 5000), *(int(1.37**k) for k in range(20, 72)), HIGHEST_US - 1, HIGHEST_US]
        for v in probe:
            b = v.bit_length() - shift
            want = v if v < count else ((b + 1) << mag) + (v >> b) - half
            if hdr._counts_index_for(v) != want:
                return None
        return count, mag
    except AttributeError:  # another version's internals
        return None


_DIRECT = _direct_index()


def _hdr_add(hdr: HdrHistogram, counts: Counter[int], lo_us: int, hi_us: int) -> None:
    """Add ``counts`` (microseconds -> how many, already within LOWEST_US..HIGHEST_US) to ``hdr``:
    what ``record_value(v, n)`` per key does, at about a fifth of its cost (it spends ~1.3 us
    per call in four Python helpers; a flush of 8,192 read latencies has ~2,400 distinct values,
    which made each flush a 2-3 ms pause of the loop)."""
    if _DIRECT is None:
        record = hdr.record_value
        for us, n in counts.items():
            record(us, n)
        return
    count, mag = _DIRECT
    shift = count.bit_length() - 1
    half = count >> 1
    array = hdr.counts
    for v, n in counts.items():
        if v < count:
            array[v] += n
        else:
            b = v.bit_length() - shift
            array[((b + 1) << mag) + (v >> b) - half] += n
    hdr.total_count += sum(counts.values())
    if lo_us < hdr.min_value:
        hdr.min_value = lo_us
    if hi_us > hdr.max_value:
        hdr.max_value = hi_us


class Folded(NamedTuple):
    """A batch of latency samples (ns) as a histogram takes them: exact count, sum, min and max,
    and the count of each microsecond value (clamped into the histogram's range) with its least
    and greatest."""

    n: int
    total: int
    lo: int
    hi: int
    counts: Counter[int]
    lo_us: int
    hi_us: int

    @classmethod
    def of(cls, samples: list[int]) -> Folded:
        """Fold a non-empty batch: ``min``/``max``/``sum`` and ``Counter`` in C."""
        lo = min(samples)
        if lo < 0:  # a clock oddity: never a negative latency
            samples = [x if x > 0 else 0 for x in samples]
            lo = 0
        hi = max(samples)
        # ``map`` of ``floordiv`` runs in C: 61 ns a sample against 75 for a comprehension.
        counts = Counter(map(floordiv, samples, repeat(1000)))
        lo_us, hi_us = lo // 1000, hi // 1000
        if lo_us < LOWEST_US or hi_us > HIGHEST_US:  # clamp into the histogram's range, by value
            for us in [us for us in counts if us < LOWEST_US or us > HIGHEST_US]:
                counts[min(max(us, LOWEST_US), HIGHEST_US)] += counts.pop(us)
            lo_us, hi_us = min(max(lo_us, LOWEST_US), HIGHEST_US), min(max(hi_us, LOWEST_US), HIGHEST_US)
        return cls(len(samples), sum(samples), lo, hi, counts, lo_us, hi_us)


class LatencyHistogram:
    """An HDR histogram in microseconds plus exact count/sum/min/max in nanoseconds.

    ``record_ns`` only appends the sample to a list (the hot path: one call per step); the list
    is folded in batches, with ``min``/``max``/``sum`` and ``Counter`` in C and the count of each
    distinct microsecond value added into its HDR bucket (``_hdr_add``). Measured here per
    sample (400,000 log-normal latencies around 100 us): append + fold 0.134 us; exact stats per
    sample in Python + fold 0.181 us; ``HdrHistogram.record_value`` per sample 0.684 us. For
    read latencies around 1.5 ms (2,400 distinct values per 8,192) append + fold went from 0.32
    to 0.17 us with ``_hdr_add``. Reading ``count``, ``min_ns``... or ``hdr`` folds what is pending.
    """

    __slots__ = ("_count", "_hdr", "_max_ns", "_min_ns", "_pending", "_sum_ns", "_summary")

    #: Fold the buffer into the histogram at this many samples, bounding its memory.
    FLUSH_AT = 8192

    def __init__(self) -> None:
        #: Made at the first sample, not here: its counts take ~190 KiB (1 us .. 1 h at 3
        #: figures), and most histograms of a run stay empty (a ws:// open's ``tls``, a step
        #: that never ends in a run of held connections): 1.1 MiB of a 5,000-user run's start.
        self._hdr: HdrHistogram | None = None
        self._pending: list[int] = []
        self._count = 0
        self._sum_ns = 0
        self._min_ns = 0
        self._max_ns = 0
        #: The last ``summary()`` and the count it was taken at: every sample added raises the
        #: count, so the same count is the same histogram. The live dashboard summarises every
        #: second of the run each time it builds a report: a one-hour run's took 1.4 s without
        #: this (a walk of each second's histogram), 40 ms with it.
        self._summary: tuple[int, Percentiles | None] = (-1, None)

    def settle(self) -> None:
        """Fold the samples still pending (also ``StepRecorder.settle``, once a second)."""
        pending = self._pending
        if not pending:
            return
        self.add_folded(Folded.of(pending))
        self._pending = []

    def add_folded(self, folded: Folded) -> None:
        """Add samples folded once (``Folded.of``): a batch that goes into two histograms (a
        read's step and its second) is counted once."""
        if self._count == 0 or folded.lo < self._min_ns:
            self._min_ns = folded.lo
        if folded.hi > self._max_ns:
            self._max_ns = folded.hi
        self._count += folded.n
        self._sum_ns += folded.total
        _hdr_add(self._made(), folded.counts, folded.lo_us, folded.hi_us)

    def _made(self) -> HdrHistogram:
        hdr = self._hdr
        if hdr is None:
            hdr = self._hdr = new_hdr()
        return hdr

    def record_ns(self, ns: int) -> None:
        pending = self._pending
        pending.append(ns)
        if len(pending) >= 8192:  # FLUSH_AT, inlined
            self.settle()

    @property
    def hdr(self) -> HdrHistogram:
        """The HDR histogram with every sample recorded so far."""
        self.settle()
        return self._made()

    @property
    def count(self) -> int:
        self.settle()
        return self._count

    @property
    def sum_ns(self) -> int:
        self.settle()
        return self._sum_ns

    @property
    def min_ns(self) -> int:
        self.settle()
        return self._min_ns

    @property
    def max_ns(self) -> int:
        self.settle()
        return self._max_ns

    def summary(self) -> Percentiles | None:
        """Percentiles in ms (from the histogram), exact mean/min/max; ``None`` when empty."""
        self.settle()
        if self._count == 0:
            return None
        if self._summary[0] == self._count:
            return self._summary[1]
        # All percentiles in one walk of the counts (hdrh's own; the same values as one
        # ``get_value_at_percentile`` each, which walks them once per percentile): a summary took
        # a fifth of the time, and the live dashboard's report each second 45 -> 20 ms over 5 steps.
        found = self._made().get_percentile_to_value_dict([p for _, p in PERCENTILES])
        values = {name: found.get(p, 0) / 1000.0 for name, p in PERCENTILES}
        max_ms = self._max_ns / 1e6
        # A percentile is the histogram's equivalent value; never report one above the exact max.
        values = {k: min(v, max_ms) for k, v in values.items()}
        summary = Percentiles(
            count=self._count,
            max=max_ms,
            mean=self._sum_ns / self._count / 1e6,
            min=self._min_ns / 1e6,
            **values,
        )
        self._summary = (self._count, summary)
        return summary

    def serialize(self) -> dict[str, Any]:
        self.settle()
        return {
            "count": self._count,
            "sum_ns": self._sum_ns,
            "min_ns": self._min_ns,
            "max_ns": self._max_ns,
            "hdr": self._made().encode().decode("ascii") if self._count else "",
        }

    def merge(self, data: dict[str, Any]) -> None:
        if not data.get("count"):
            return
        self.settle()
        self._made().decode_and_add(data["hdr"].encode("ascii"))
        if self._count == 0 or data["min_ns"] < self._min_ns:
            self._min_ns = data["min_ns"]
        self._max_ns = max(self._max_ns, data["max_ns"])
        self._count += data["count"]
        self._sum_ns += data["sum_ns"]

    @classmethod
    def from_serialized(cls, data: dict[str, Any]) -> LatencyHistogram:
        hist = cls()
        hist.merge(data)
        return hist


def _unmasked(text: str) -> str:
    """The default ``mask``: texts as they are (a run's ``RunContext`` installs its secrets')."""
    return text


def _add_counts(into: dict[str, int], other: dict[str, int]) -> None:
    for key, n in other.items():
        into[key] = into.get(key, 0) + n


class StepRecorder:
    """Everything measured for one step (all its executions, all virtual users)."""

    __slots__ = (
        "closes",
        "connect",
        "connection",
        "count",
        "delivery",
        "delivery_ahead",
        "errors",
        "failures",
        "internal_errors",
        "kind",
        "latency",
        "line",
        "mask",
        "name",
        "ok",
        "pending",
        "pending_max_ns",
        "pending_sum_ns",
        "rc",
        "reach",
        "reach_overflow",
        "received",
        "received_gap_max_ns",
        "response",
        "skipped",
        "skipped_messages",
    )

    def __init__(self, name: str, kind: str, connection: str = "", line: int = 0) -> None:
        self.name = name
        self.kind = kind
        self.connection = connection
        self.line = line
        #: Applied to every error text as it is recorded (``runner.scenario.secrets``): raw secrets never
        #: enter a recorder, so a worker's deltas carry none.
        self.mask: Callable[[str], str] = _unmasked
        self.count = 0
        self.ok = 0
        self.failures = 0
        self.skipped = 0  # not run because an earlier step of the iteration failed
        self.skipped_messages = 0
        #: Executions still in flight when the run ended (cut, never completed), and how long
        #: they had waited by then: counted apart from ``count``, which holds ended executions.
        self.pending = 0
        self.pending_max_ns = 0
        self.pending_sum_ns = 0
        #: Executions that raised inside wsload (a bug, not the server): each also counts as a
        #: failure, and any of them fails the run whatever the step expected.
        self.internal_errors = 0
        #: Reads that returned 1: "code reason" of the peer's close frame -> count.
        self.closes: dict[str, int] = {}
        self.rc: dict[str, int] = {}  # every non-success code -> count
        self.errors: dict[str, int] = {}  # "rc\x00message" -> count
        self.latency = LatencyHistogram()
        #: Reads: from the start of the write step that asked (or of the read itself) to the
        #: read's end, what the scenario's code saw (``latency`` is request on the wire to answer
        #: parsed); see ``runner.engine.vu``.
        self.response: LatencyHistogram | None = LatencyHistogram() if kind == "read" else None
        #: Reads with ``latency_from`` (made at their first sample): stamp to parse, wall clocks.
        self.delivery: LatencyHistogram | None = None
        self.delivery_ahead = 0  # stamps later than the arrival, recorded as 0
        #: Reads with ``latency_from.id``: message id -> [receivers, largest delivery ns] (the time
        #: it took to reach the last receiver that got it); made at the first id.
        self.reach: dict[str, list[int]] | None = None
        self.reach_overflow = 0  # deliveries of ids beyond ``MAX_REACH_IDS``, not in ``reach``
        #: Receives: messages taken (matched and passed their checks), in every execution, ended
        #: or not; and the longest wait for one (from the step's start or the message before).
        self.received = 0
        self.received_gap_max_ns = 0
        self.connect: dict[str, LatencyHistogram] | None = (
            {"tcp": LatencyHistogram(), "tls": LatencyHistogram(), "upgrade": LatencyHistogram()}
            if kind == "open"
            else None
        )

    def settle(self) -> None:
        """Fold the pending samples of every histogram of the step: ``RunRecorder.fold`` does
        at each new second, so a step recorded through ``record`` (opens, closes, failures)
        holds at most a second of bare samples, not up to 8,192 per histogram (an open keeps
        three, ~110 bytes: at 5,000 users opening in 5 s, 0.5 MiB that grew with the users)."""
        self.latency.settle()
        for histogram in (self.response, self.delivery):
            if histogram is not None:
                histogram.settle()
        if self.connect is not None:
            for histogram in self.connect.values():
                histogram.settle()

    def record(
        self,
        *,
        ok: bool,
        rc: int,
        rc_is_success: bool,
        latency_ns: int | None,
        error: str | None = None,
        skipped_messages: int = 0,
    ) -> None:
        """One execution of the step. ``error`` (last error or failure text) is grouped with rc."""
        self.count += 1
        if ok:
            self.ok += 1
        else:
            self.failures += 1
        if not rc_is_success:
            key = str(rc)
            self.rc[key] = self.rc.get(key, 0) + 1
        if latency_ns is not None:
            self.latency.record_ns(latency_ns)
        if skipped_messages:
            self.skipped_messages += skipped_messages
        if error is not None and not ok:
            self.add_error(rc, error)

    def record_ok(self, latency_ns: int | None, skipped_messages: int = 0) -> None:
        """``record(ok=True, rc_is_success=True, ...)`` on the hot path: a passed execution
        whose rc is the kind's default success (so no rc count and no error)."""
        self.count += 1
        self.ok += 1
        if latency_ns is not None:
            self.latency.record_ns(latency_ns)
        if skipped_messages:
            self.skipped_messages += skipped_messages

    def record_pending(self, waited_ns: int) -> None:
        """An execution cut by the end of the run after waiting ``waited_ns``."""
        self.pending += 1
        self.pending_sum_ns += max(waited_ns, 0)
        if waited_ns > self.pending_max_ns:
            self.pending_max_ns = waited_ns

    def record_delivery(self, ns: int, message_id: str | None = None) -> None:
        """A delivery latency (``latency_from``); a negative one (the sender's clock ahead of
        ours) is recorded as 0 and counted in ``delivery_ahead``. With the message's id, one
        more receiver of it (``reach``)."""
        if self.delivery is None:
            self.delivery = LatencyHistogram()
        if ns < 0:
            self.delivery_ahead += 1
            ns = 0
        self.delivery.record_ns(ns)
        if message_id is not None:
            self._reached(message_id, 1, ns)

    def _reached(self, message_id: str, receivers: int, latest_ns: int) -> None:
        reach = self.reach
        if reach is None:
            reach = self.reach = {}
        seen = reach.get(message_id)
        if seen is not None:
            seen[0] += receivers
            if latest_ns > seen[1]:
                seen[1] = latest_ns
        elif len(reach) < MAX_REACH_IDS:
            reach[message_id] = [receivers, latest_ns]
        else:
            self.reach_overflow += receivers

    def record_close(self, code: int | None, reason: str = "") -> None:
        """A read that returned 1: the peer's close code and reason (grouped, bounded; the reason
        masked, as the peer may echo a secret, and its control characters escaped)."""
        if reason:
            reason = self.mask(reason)
            if not reason.isprintable():
                reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)
        key = "no close frame" if code is None else f"{code} {reason}".rstrip()
        if key not in self.closes and len(self.closes) >= MAX_ERROR_GROUPS:
            key = OTHER_ERRORS
        self.closes[key] = self.closes.get(key, 0) + 1

    def reset(self) -> None:
        """Zero every count (identity, name and row order are kept); see ``take_interval``."""
        self.count = self.ok = self.failures = self.skipped = self.skipped_messages = 0
        self.pending = self.pending_max_ns = self.pending_sum_ns = self.internal_errors = 0
        self.closes = {}
        self.rc = {}
        self.errors = {}
        self.latency = LatencyHistogram()
        if self.response is not None:
            self.response = LatencyHistogram()
        if self.delivery is not None:
            self.delivery = LatencyHistogram()
        self.delivery_ahead = 0
        self.reach = None
        self.reach_overflow = 0
        self.received = self.received_gap_max_ns = 0
        if self.connect is not None:
            self.connect = {k: LatencyHistogram() for k in self.connect}

    def add_error(self, rc: int, message: str, count: int = 1) -> None:
        if "socket " in message:
            message = _socket_free(message)
        key = f"{rc}\x00{self.mask(message)}"
        if key not in self.errors and len(self.errors) >= MAX_ERROR_GROUPS:
            key = f"{rc}\x00{OTHER_ERRORS}"
        self.errors[key] = self.errors.get(key, 0) + count

    def record_connect(self, tcp_ns: int, tls_ns: int, upgrade_ns: int) -> None:
        if self.connect is None:
            return
        self.connect["tcp"].record_ns(tcp_ns)
        if tls_ns:
            self.connect["tls"].record_ns(tls_ns)
        self.connect["upgrade"].record_ns(upgrade_ns)

    def error_groups(self) -> list[tuple[int, str, int]]:
        """(rc, message, count), most frequent first."""
        groups = []
        for key, n in self.errors.items():
            rc, _, message = key.partition("\x00")
            groups.append((int(rc), message, n))
        groups.sort(key=lambda g: (-g[2], g[0], g[1]))
        return groups

    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "connection": self.connection,
            "line": self.line,
            "count": self.count,
            "ok": self.ok,
            "failures": self.failures,
            "skipped": self.skipped,
            "skipped_messages": self.skipped_messages,
            "pending": self.pending,
            "pending_max_ns": self.pending_max_ns,
            "pending_sum_ns": self.pending_sum_ns,
            "internal_errors": self.internal_errors,
            "closes": dict(self.closes),
            "rc": dict(self.rc),
            "errors": [[rc, msg, n] for rc, msg, n in self.error_groups()],
            "latency": self.latency.serialize(),
            "response": self.response.serialize() if self.response is not None else None,
            "delivery": self.delivery.serialize() if self.delivery is not None else None,
            "delivery_ahead": self.delivery_ahead,
            "reach": {k: list(v) for k, v in self.reach.items()} if self.reach else None,
            "reach_overflow": self.reach_overflow,
            "received": self.received,
            "received_gap_max_ns": self.received_gap_max_ns,
            "connect": {k: h.serialize() for k, h in self.connect.items()} if self.connect else None,
        }

    def merge(self, data: dict[str, Any]) -> None:
        self.count += data["count"]
        self.ok += data["ok"]
        self.failures += data["failures"]
        self.skipped += data["skipped"]
        self.skipped_messages += data["skipped_messages"]
        self.pending += data.get("pending", 0)
        self.pending_sum_ns += data.get("pending_sum_ns", 0)
        self.pending_max_ns = max(self.pending_max_ns, data.get("pending_max_ns", 0))
        self.internal_errors += data.get("internal_errors", 0)
        for key, n in data.get("closes", {}).items():
            if key not in self.closes and len(self.closes) >= MAX_ERROR_GROUPS:
                key = OTHER_ERRORS
            self.closes[key] = self.closes.get(key, 0) + n
        _add_counts(self.rc, data["rc"])
        for rc, msg, n in data["errors"]:
            self.add_error(rc, msg, n)
        self.latency.merge(data["latency"])
        if self.response is not None and data.get("response"):
            self.response.merge(data["response"])
        if data.get("delivery"):
            if self.delivery is None:
                self.delivery = LatencyHistogram()
            self.delivery.merge(data["delivery"])
        self.delivery_ahead += data.get("delivery_ahead", 0)
        for message_id, (receivers, latest_ns) in (data.get("reach") or {}).items():
            self._reached(message_id, receivers, latest_ns)
        self.reach_overflow += data.get("reach_overflow", 0)
        self.received += data.get("received", 0)
        self.received_gap_max_ns = max(self.received_gap_max_ns, data.get("received_gap_max_ns", 0))
        if self.connect is not None and data.get("connect"):
            for k, h in self.connect.items():
                h.merge(data["connect"][k])


class SecondCounts(NamedTuple):
    """One second of a ``TimeSeries`` by name: the fields follow the bucket's slots (``t`` first),
    so ``SecondCounts(t, *bucket)`` is the only place outside ``TimeSeries`` that knows them.
    ``latency``: the reads' histogram, live or serialised, or None; the gauges are None when no
    one sampled them in that second."""

    t: int
    starts: int
    steps: int
    failures: int
    rc: dict[str, int]
    latency: LatencyHistogram | dict[str, Any] | None
    ended: int
    messages: int
    vus: int | None
    connections: int | None
    dropped: int
    paused: int | None


class TimeSeries:
    """Per second since the start: iterations started and ended, step executions, messages
    (reads and writes that succeeded, and each message a receive took, in the second it
    arrived), errors by rc, read latency; and two gauges sampled by whoever runs the load
    (active virtual users, open connections) plus open-model starts dropped.

    The histogram of the current and the previous second stay live; older seconds are kept only
    as their compressed serialised form (a few hundred bytes, not the ~190 KB of a live HDR
    histogram), so an hour-long run stays small. Merging workers' series is exact per second for
    the counters; the gauges are set once per second by the coordinator (merge keeps the larger).
    """

    __slots__ = ("_newest", "_summaries", "seconds")

    # bucket layout (a list, not an object: the hot path indexes it)
    STARTS, STEPS, FAILURES, RC, HIST, ENDED, MESSAGES, VUS, CONNECTIONS, DROPPED, PAUSED = range(11)

    def __init__(self) -> None:
        self.seconds: dict[int, list[Any]] = {}
        self._newest = -1
        #: The read latency summary of each compacted second, taken while its histogram was at
        #: hand: a report summarises every second, and decoding an hour of compacted histograms
        #: again each time took 1.2 s (the live dashboard builds one every second).
        self._summaries: dict[int, Percentiles | None] = {}

    def _bucket(self, second: int) -> list[Any]:
        bucket = self.seconds.get(second)
        if bucket is None:
            bucket = self.seconds[second] = [0, 0, 0, {}, None, 0, 0, None, None, 0, None]
            if second > self._newest:
                self._newest = second
                self._compact(second - 1)
        return bucket

    def _compact(self, keep_from: int) -> None:
        for second, bucket in self.seconds.items():
            if second < keep_from and isinstance(bucket[4], LatencyHistogram):
                self._summaries[second] = bucket[4].summary()
                bucket[4] = bucket[4].serialize()

    def start(self, second: int) -> None:
        self._bucket(second)[0] += 1

    def ended(self, second: int) -> None:
        """An iteration ended (passed or not) in ``second``."""
        self._bucket(second)[5] += 1

    def dropped(self, second: int, n: int = 1) -> None:
        """Open-model starts not made in ``second`` because ``max_vus`` users were all busy."""
        self._bucket(second)[9] += n

    def gauges(self, second: int, vus: int, connections: int, paused: int = 0) -> None:
        """Active virtual users, open connections and users pausing after a failed iteration
        at a moment of ``second`` (the largest sample of the second is kept)."""
        bucket = self._bucket(second)
        bucket[7] = vus if bucket[7] is None else max(bucket[7], vus)
        bucket[8] = connections if bucket[8] is None else max(bucket[8], connections)
        bucket[10] = paused if bucket[10] is None else max(bucket[10], paused)

    def step(
        self, second: int, ok: bool, rc: int | None, read_latency_ns: int | None, message: bool = False
    ) -> None:
        bucket = self._bucket(second)
        bucket[1] += 1
        if not ok:
            bucket[2] += 1
        if message:
            bucket[6] += 1
        if rc is not None:
            errors = bucket[3]
            key = str(rc)
            errors[key] = errors.get(key, 0) + 1
        if read_latency_ns is not None:
            hist = bucket[4]
            if not isinstance(hist, LatencyHistogram):
                hist = bucket[4] = LatencyHistogram.from_serialized(hist) if hist else LatencyHistogram()
            hist.record_ns(read_latency_ns)

    def message(self, second: int) -> None:
        """A message a streaming step (``receive``) took, counted in the second it arrived."""
        bucket = self.seconds.get(second)
        if bucket is None:
            bucket = self._bucket(second)
        bucket[6] += 1

    def step_ok(self, second: int, read_latency_ns: int | None, message: bool) -> None:
        """``step(second, True, None, read_latency_ns, message)``: a passed step with its
        default rc, the one case the engine records per message."""
        bucket = self.seconds.get(second)
        if bucket is None:
            bucket = self._bucket(second)
        bucket[1] += 1
        if message:
            bucket[6] += 1
        if read_latency_ns is not None:
            hist = bucket[4]
            if not isinstance(hist, LatencyHistogram):
                hist = bucket[4] = LatencyHistogram.from_serialized(hist) if hist else LatencyHistogram()
            hist.record_ns(read_latency_ns)

    def steps_ok(self, second: int, n: int, messages: int, read: Folded | None) -> None:
        """``n`` passed steps with their default rc in ``second`` (``messages`` of them moved a
        message; ``read``: their read latencies, folded): what ``RunRecorder.fold`` adds."""
        bucket = self._bucket(second)
        bucket[1] += n
        bucket[6] += messages
        if read is not None:
            hist = bucket[4]
            if not isinstance(hist, LatencyHistogram):
                hist = bucket[4] = LatencyHistogram.from_serialized(hist) if hist else LatencyHistogram()
            hist.add_folded(read)

    def serialize(self) -> list[dict[str, Any]]:
        out = []
        for second in sorted(self.seconds):
            starts, steps, failures, errors, hist, ended, messages, vus, conns, dropped, paused = (
                self.seconds[second]
            )
            if isinstance(hist, LatencyHistogram):
                hist = hist.serialize()
            entry: dict[str, Any] = {
                "t": second,
                "starts": starts,
                "iterations": ended,
                "steps": steps,
                "messages": messages,
                "failures": failures,
                "rc": dict(errors),
                "latency": hist,
            }
            if vus is not None:
                entry["vus"] = vus
                entry["connections"] = conns
                entry["paused"] = paused or 0
            if dropped:
                entry["dropped"] = dropped
            out.append(entry)
        return out

    def merge(self, data: list[dict[str, Any]]) -> None:
        for entry in data:
            bucket = self._bucket(entry["t"])
            bucket[0] += entry["starts"]
            bucket[1] += entry["steps"]
            bucket[2] += entry["failures"]
            _add_counts(bucket[3], entry["rc"])
            bucket[5] += entry.get("iterations", 0)
            bucket[6] += entry.get("messages", 0)
            bucket[9] += entry.get("dropped", 0)
            if "vus" in entry:
                self.gauges(entry["t"], entry["vus"], entry.get("connections") or 0, entry.get("paused") or 0)
            if entry.get("latency"):
                hist = bucket[4]
                if not isinstance(hist, LatencyHistogram):
                    hist = LatencyHistogram.from_serialized(hist) if hist else LatencyHistogram()
                    self._summaries.pop(entry["t"], None)  # live again: its summary will change
                hist.merge(entry["latency"])
                bucket[4] = hist
        self._compact(self._newest - 1)

    def summary_of(self, counts: SecondCounts) -> Percentiles | None:
        """The read latency summary of one second of ``samples()`` (None: no reads in it)."""
        hist = counts.latency
        if not hist:
            return None
        if isinstance(hist, LatencyHistogram):
            return hist.summary()
        if counts.t in self._summaries:
            return self._summaries[counts.t]
        return LatencyHistogram.from_serialized(hist).summary()

    def samples(self) -> list[SecondCounts]:
        """Every second recorded, in order, by name (what the report's per-second samples and
        the load figures read; nothing outside this class indexes a bucket)."""
        return [SecondCounts(t, *self.seconds[t]) for t in sorted(self.seconds)]

    def latest_read_p99_ms(self, second: int) -> float | None:
        """p99 of the reads that ended in ``second`` (for progress lines), or None."""
        bucket = self.seconds.get(second)
        if bucket is None or not bucket[4]:
            return None
        hist = bucket[4]
        if not isinstance(hist, LatencyHistogram):
            hist = LatencyHistogram.from_serialized(hist)
        summary = hist.summary()
        return summary.p99 if summary else None


class LoadRecorder:
    """What only a load run measures: starts made and dropped (open model), the schedule lag of
    each start (actual - intended), and the iteration latency from the *intended* start to the
    end (so a late start counts against latency: no coordinated omission). Mergeable like the rest.
    """

    __slots__ = ("dropped", "iteration", "lag", "pause_ns", "pauses", "started")

    def __init__(self) -> None:
        self.started = 0
        self.dropped = 0
        self.lag = LatencyHistogram()
        self.iteration = LatencyHistogram()
        #: Closed model: pauses a user made after a failed iteration, and their total length.
        self.pauses = 0
        self.pause_ns = 0

    def serialize(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "dropped": self.dropped,
            "lag": self.lag.serialize(),
            "iteration": self.iteration.serialize(),
            "pauses": self.pauses,
            "pause_ns": self.pause_ns,
        }

    def merge(self, data: dict[str, Any]) -> None:
        self.started += data["started"]
        self.dropped += data["dropped"]
        self.pauses += data.get("pauses", 0)
        self.pause_ns += data.get("pause_ns", 0)
        self.lag.merge(data["lag"])
        self.iteration.merge(data["iteration"])


class WorkerHealth:
    """One load-generating process measured as a generator (``runner.load.health``): every
    event-loop lag sample in a histogram, and one sample per second of the run:
    ``(second, cpu share of one core, largest loop lag in ns, connections whose send buffer is
    above its high-water mark, saturated)``."""

    __slots__ = ("lag", "seconds")

    def __init__(self) -> None:
        self.lag = LatencyHistogram()
        self.seconds: dict[int, tuple[float, int, int, bool]] = {}

    def serialize(self) -> dict[str, Any]:
        return {
            "lag": self.lag.serialize(),
            "seconds": [
                [t, cpu, lag, blocked, sat] for t, (cpu, lag, blocked, sat) in sorted(self.seconds.items())
            ],
        }

    def merge(self, data: dict[str, Any], offset: int = 0) -> None:
        self.lag.merge(data["lag"])
        for t, cpu, lag, blocked, sat in data["seconds"]:
            self.seconds[int(t) + offset] = (float(cpu), int(lag), int(blocked), bool(sat))


class HealthRecorder:
    """The generator's health per worker (named ``"1"``, ``"2"``... or ``"shard 3"``)."""

    __slots__ = ("workers",)

    def __init__(self) -> None:
        self.workers: dict[str, WorkerHealth] = {}

    def worker(self, name: str) -> WorkerHealth:
        health = self.workers.get(name)
        if health is None:
            health = self.workers[name] = WorkerHealth()
        return health

    def serialize(self) -> dict[str, Any]:
        return {name: w.serialize() for name, w in self.workers.items()}

    def merge(self, data: dict[str, Any], *, prefix: str = "", offset: int = 0) -> None:
        for name, w in data.items():
            self.worker(prefix + name).merge(w, offset)

    def latest(self, second: int) -> tuple[float, int, bool] | None:
        """(highest CPU share, largest loop lag in ns, any worker saturated) over the workers in
        ``second``, or None."""
        samples = [w.seconds[second] for w in self.workers.values() if second in w.seconds]
        if not samples:
            return None
        return max(x[0] for x in samples), max(x[1] for x in samples), any(x[3] for x in samples)


class QuickRow:
    """The executions of one step that passed with their kind's default success and nothing more
    to say (the per-message case), kept as bare samples until ``RunRecorder.fold``: ``samples``
    their latencies (ns), ``responses`` a read's response times (``StepRecorder.response``; None
    for a step without)."""

    __slots__ = ("message", "read", "rec", "responses", "samples")

    def __init__(self, rec: StepRecorder, read: bool, message: bool) -> None:
        self.rec = rec
        self.read = read
        self.message = message
        self.samples: list[int] = []
        self.responses: list[int] | None = [] if read and rec.response is not None else None


class RunRecorder:
    """All step recorders of one run (in scenario order), iterations, grouped failure details.

    The per-message case is recorded in two halves (``quick_row``, ``fold``): the engine appends
    a passed step's latency to its ``QuickRow`` and, at the first record past a whole second of
    the run (``next_second_ns``), folds every row's samples into the step's counts and
    histograms and into the time series' second they were taken in; ``steps`` and
    ``timeseries`` fold before they answer. Measured against recording each sample into its
    step's counters, histogram and second one by one (bench/README.md, "measurement overhead"):
    2.3 us of a 17.7 us round trip before, about 0.6 after. Every pending sample belongs to the
    second of the last fold (any later second's first record folds first), so the series stays
    exact per second."""

    def __init__(self, start_ns: int = 0) -> None:
        self.start_ns = start_ns
        self._steps: dict[str, StepRecorder] = {}
        self._quick: list[QuickRow] = []
        #: The second the pending samples were taken in, and when the next one starts (0 until
        #: the first record: ``start_ns`` may still be moved to the shared start before it).
        self._second = 0
        self.next_second_ns = 0
        # Iterations begun; of those, ended with every step passed, ended at a failed step, and
        # cut before their end (by the end of the run, a signal or an abort). Begun minus the
        # other three is what is still running.
        self.iterations_started = 0
        self.iterations_completed = 0
        self.iterations_failed = 0
        self.iterations_interrupted = 0
        # (step, message) -> [line, expected, actual, count]
        self.failures: dict[tuple[str, str], list[Any]] = {}
        self.failures_dropped = 0
        #: The time series as recorded, for writers; readers take ``timeseries``.
        self.series = TimeSeries()
        self.load = LoadRecorder()
        self.health = HealthRecorder()
        #: Applied to failure texts as they are recorded, and given to each step's recorder.
        self.mask: Callable[[str], str] = _unmasked
        #: A plan's populations, each recorded apart (its steps, iterations, load, gauges); this
        #: recorder then holds the process's own figures (health, the gauges of all together).
        #: Serialising, merging and taking intervals go down into them, so every path that moves
        #: a recorder (worker deltas, shard reports) moves a plan's whole.
        self.populations: dict[str, RunRecorder] = {}

    @property
    def steps(self) -> dict[str, StepRecorder]:
        """Step name -> its recorder, with every pending sample folded in."""
        if self._quick:
            self.fold()
        return self._steps

    @property
    def timeseries(self) -> TimeSeries:
        """The time series with every pending sample folded in."""
        if self._quick:
            self.fold()
        return self.series

    def quick_row(self, rec: StepRecorder, read: bool, message: bool) -> QuickRow:
        """Where the engine keeps the per-message executions of step ``rec`` until ``fold``."""
        row = QuickRow(rec, read, message)
        self._quick.append(row)
        return row

    def fold(self, now_ns: int | None = None) -> None:
        """Fold the pending samples of every ``QuickRow`` into their steps and second; with
        ``now_ns`` (a record past ``next_second_ns``), move on to the second it falls in."""
        second = self._second
        for row in self._quick:
            samples = row.samples
            if samples:
                n = len(samples)
                rec = row.rec
                rec.count += n
                rec.ok += n
                folded = Folded.of(samples)
                rec.latency.add_folded(folded)
                self.series.steps_ok(second, n, n if row.message else 0, folded if row.read else None)
                samples.clear()
            responses = row.responses
            if responses and row.rec.response is not None:
                row.rec.response.add_folded(Folded.of(responses))
                responses.clear()
        if now_ns is not None:
            for step in self._steps.values():
                step.settle()
            self._second = second = self.second(now_ns)
            self.next_second_ns = self.start_ns + (second + 1) * 1_000_000_000

    def population(self, name: str) -> RunRecorder:
        """The recorder of population ``name`` (made on first use, from this one's start)."""
        rec = self.populations.get(name)
        if rec is None:
            rec = self.populations[name] = RunRecorder(self.start_ns)
        return rec

    def every(self) -> list[RunRecorder]:
        """This recorder and its populations' (what a progress line sums)."""
        return [self, *self.populations.values()]

    def step(self, name: str, kind: str, connection: str = "", line: int = 0) -> StepRecorder:
        """The recorder of step ``name``, made on first use (declare steps up front to keep order)."""
        rec = self._steps.get(name)
        if rec is None:
            rec = self._steps[name] = StepRecorder(name, kind, connection, line)
            rec.mask = self.mask
        return rec

    def set_mask(self, mask: Callable[[str], str]) -> None:
        """Mask every error and failure text as it is recorded (a run's secrets,
        ``runner.scenario.secrets.SecretRegistry.mask``), in this recorder and its steps'."""
        self.mask = mask
        for step in self._steps.values():
            step.mask = mask

    def second(self, now_ns: int) -> int:
        return max(0, (now_ns - self.start_ns) // 1_000_000_000)

    def add_failure(
        self, step: str, line: int, message: str, expected: str, actual: str, count: int = 1
    ) -> None:
        mask = self.mask
        if "socket " in message:
            message, actual = _socket_free(message), _socket_free(actual)
        message, expected, actual = mask(message), mask(expected), mask(actual)
        key = (step, message)
        entry = self.failures.get(key)
        if entry is not None:
            entry[3] += count
        elif len(self.failures) < MAX_FAILURE_GROUPS:
            self.failures[key] = [line, expected, actual, count]
        else:
            self.failures_dropped += count

    def serialize(self) -> dict[str, Any]:
        return {
            "start_ns": self.start_ns,
            "iterations_started": self.iterations_started,
            "iterations_completed": self.iterations_completed,
            "iterations_failed": self.iterations_failed,
            "iterations_interrupted": self.iterations_interrupted,
            "steps": [rec.serialize() for rec in self.steps.values()],
            "failures": [
                [step, msg, line, exp, act, n] for (step, msg), (line, exp, act, n) in self.failures.items()
            ],
            "failures_dropped": self.failures_dropped,
            "timeseries": self.timeseries.serialize(),
            "load": self.load.serialize(),
            "health": self.health.serialize(),
            **(
                {"populations": {name: rec.serialize() for name, rec in self.populations.items()}}
                if self.populations
                else {}
            ),
        }

    def merge(self, data: dict[str, Any]) -> None:
        """Add a serialised recorder (same scenario; seconds are relative to each one's start)."""
        self.iterations_started += data["iterations_started"]
        self.iterations_completed += data["iterations_completed"]
        self.iterations_failed += data["iterations_failed"]
        self.iterations_interrupted += data["iterations_interrupted"]
        for step in data["steps"]:
            self.step(step["name"], step["kind"], step["connection"], step["line"]).merge(step)
        for step, msg, line, exp, act, n in data["failures"]:
            self.add_failure(step, line, msg, exp, act, n)
        self.failures_dropped += data["failures_dropped"]
        self.series.merge(data["timeseries"])
        if data.get("load"):
            self.load.merge(data["load"])
        if data.get("health"):
            self.health.merge(data["health"])
        for name, population in (data.get("populations") or {}).items():
            self.population(name).merge(population)

    def take_interval(self) -> dict[str, Any]:
        """Serialise what was recorded since the last call and start afresh, keeping each step's
        row (and the ``StepRecorder`` objects that contexts hold): a worker sends these deltas,
        and the parent's merge of all of them is exactly the run's total."""
        data = self.serialize()
        for population in self.populations.values():
            population.take_interval()
        for rec in self._steps.values():  # (folded by ``serialize``)
            rec.reset()
        self.iterations_started = self.iterations_completed = 0
        self.iterations_failed = self.iterations_interrupted = 0
        self.failures = {}
        self.failures_dropped = 0
        self.series = TimeSeries()
        self.load = LoadRecorder()
        self.health = HealthRecorder()
        return data

    @classmethod
    def from_serialized(cls, data: dict[str, Any]) -> RunRecorder:
        rec = cls(data.get("start_ns", 0))
        rec.merge(data)
        return rec
