"""The HTML report: one self-contained file (uPlot, its CSS, our script and the chart data inlined)
that opens offline and prints well. A pure function of finished results: one result gives a report
of that run, two or more give a side-by-side comparison (e.g. before and after a change).

What is decided lives here, in Python: tables, chart series, downsampling. The page's script only
hands the prepared series to uPlot, so the report's content is testable without a browser.
Long time series are downsampled to at most ``MAX_POINTS`` points per chart, keeping each bucket's
worst latency, so an hour-long run stays a few hundred kilobytes.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache, partial
from importlib import resources
from string import Template
from typing import Any

from runner import __version__
from runner.reports import console
from runner.reports.masking import Masker
from runner.results.codec import encode_settings
from runner.results.load_figures import SaturationBounds
from runner.results.result import LatencySummary, RunResult, SecondSample, StepResult

__all__ = [
    "MAX_POINTS",
    "PERCENTILES",
    "Chart",
    "charts",
    "downsample",
    "render",
    "render_live_page",
    "report_parts",
    "so_far",
]

#: At most this many points per time-series chart (a one-hour run has 3,600 seconds).
MAX_POINTS = 1200
#: Percentiles of the per-step latency distribution (HDR percentile spectrum).
PERCENTILES = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999)
#: Step kinds whose "latency" is not the server's (a sleep measures our own timer).
_NOT_LATENCY = frozenset({"sleep"})
_LAT_ROWS = (
    ("p50", "p50"),
    ("p90", "p90"),
    ("p95", "p95"),
    ("p99", "p99"),
    ("p99.9", "p999"),
    ("max", "max"),
)


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: x values (elapsed seconds or 1/(1-percentile)) and one y list per series."""

    id: str
    title: str
    note: str
    x: str  # "elapsed" or "percentile"
    y: str  # the unit of the y axis
    series: tuple[str, ...]
    data: tuple[tuple[float | None, ...], ...]  # x first, then one list per series
    ylog: bool = False
    #: x ranges drawn shaded behind the lines: the seconds the load generator was saturated.
    shade: tuple[tuple[float, float], ...] = ()
    #: horizontal lines (y, label): a bound such as the healthy CPU share.
    marks: tuple[tuple[float, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "x": self.x,
            "y": self.y,
            "ylog": self.ylog,
            "series": list(self.series),
            "data": [list(d) for d in self.data],
            "shade": [list(r) for r in self.shade],
            "marks": [[y, label] for y, label in self.marks],
        }


# --- time series ------------------------------------------------------------------------------


#: The last, partial second of a run is drawn only if the run covered this much of it (a
#: rate over a sliver of a second is noise), its rates scaled to per second.
MIN_PARTIAL = 0.2


def _dense(
    timeseries: Sequence[SecondSample],
    value: Callable[[SecondSample], float | None],
    fill: float | None,
    rate: bool = False,
) -> list[float | None]:
    """One value per second from 0 to the last second; seconds absent from the series get ``fill``.

    ``rate``: the values are counts per second, so the run's last, partial second (``partial``:
    the share of it the run covered) is scaled to a whole second, or left out when it is a
    sliver; without that the last point looked like a collapse of the load."""
    if not timeseries:
        return []
    last = max(e.t for e in timeseries)
    out: list[float | None] = [fill] * (last + 1)
    for e in timeseries:
        t = e.t
        if t >= 0:
            v = value(e)
            covered = e.partial
            if rate and covered is not None and v is not None:
                v = round(v / covered, 3) if covered >= MIN_PARTIAL else None
                out[t] = v
                continue
            out[t] = v if v is not None else fill
    return out


def _saturated(timeseries: Sequence[SecondSample]) -> tuple[tuple[float, float], ...]:
    """The runs of seconds in which the load generator was saturated, as x ranges."""
    ranges: list[list[float]] = []
    for t in sorted(e.t for e in timeseries if e.saturated):
        if ranges and ranges[-1][1] == t:
            ranges[-1][1] = t + 1
        else:
            ranges.append([t, t + 1])
    return tuple((a, b) for a, b in ranges)


def downsample(values: Sequence[float | None], bucket: int, how: str) -> list[float | None]:
    """Values in buckets of ``bucket`` seconds: ``mean`` (rates per second) or ``max`` (latency, gauges).

    A bucket without any value stays ``None`` (a gap in the chart, not a fake zero).
    """
    if bucket <= 1:
        return list(values)
    out: list[float | None] = []
    for i in range(0, len(values), bucket):
        chunk = [v for v in values[i : i + bucket] if v is not None]
        if not chunk:
            out.append(None)
        elif how == "max":
            out.append(max(chunk))
        else:
            out.append(round(sum(chunk) / len(chunk), 3))
    return out


def _bucket_size(seconds: int, max_points: int) -> int:
    return max(1, math.ceil(seconds / max_points))


def _lat(key: str) -> Callable[[SecondSample], float | None]:
    def get(e: SecondSample) -> float | None:
        value = e.latency_ms.get(key) if e.latency_ms is not None else None
        return float(value) if value is not None else None

    return get


def _num(value: float | None) -> float | None:
    return float(value) if value is not None else None


def _rc_codes(timeseries: Sequence[SecondSample]) -> list[str]:
    codes = {str(code) for e in timeseries for code in e.rc}
    return sorted(codes, key=lambda c: (int(c) if c.lstrip("-").isdigit() else 0, c))


def _rc(code: str) -> Callable[[SecondSample], float | None]:
    return lambda e: float(e.rc.get(code, 0))


@dataclass(frozen=True, slots=True)
class _Metric:
    """How to read one series from a second's sample, fill missing seconds, and downsample it."""

    label: str
    value: Callable[[SecondSample], float | None]
    fill: float | None
    how: str


def _has(timeseries: Sequence[SecondSample], metric: _Metric) -> bool:
    return any(metric.value(e) is not None for e in timeseries)


def _moved(timeseries: Sequence[SecondSample]) -> _Metric:
    """Messages per second, or steps per second for a series without message counts."""
    if any(e.messages is not None for e in timeseries):
        return _Metric("messages/s", lambda e: _num(e.messages), 0.0, "mean")
    return _Metric("steps/s", lambda e: float(e.steps), 0.0, "mean")


def _time_metrics(timeseries: Sequence[SecondSample]) -> dict[str, tuple[str, str, str, list[_Metric]]]:
    """The time charts this series can fill: id -> (title, unit, note, metrics with data)."""
    specs: dict[str, tuple[str, str, str, list[_Metric]]] = {
        "latency": (
            "Latency percentiles over time",
            "ms",
            "latency of the reads that ended in each second (from the request handed to the kernel "
            "to the answer parsed); shaded: seconds in which the load generator was saturated",
            [_Metric(label, _lat(key), None, "max") for label, key in _LAT_ROWS if label != "p95"],
        ),
        "throughput": (
            "Messages and starts per second",
            "/s",
            "messages (or steps) per second, scenario iterations started, and open-model starts dropped",
            [
                _moved(timeseries),
                _Metric("starts/s", lambda e: float(e.starts), 0.0, "mean"),
                _Metric("dropped starts/s", lambda e: _num(e.dropped), 0.0, "mean"),
            ],
        ),
        "users": (
            "Active virtual users and open connections",
            "",
            "users pausing after a failed iteration (load.failure_pause) are among the active ones",
            [
                _Metric("active VUs", lambda e: _num(e.vus), None, "max"),
                _Metric("open connections", lambda e: _num(e.connections), None, "max"),
                _Metric("pausing after a failure", lambda e: _num(e.paused), None, "max"),
            ],
        ),
        "generator": (
            "Load generator health",
            "% / ms",
            "the busiest worker's CPU share of one core (%) and the largest event-loop lag (ms) in "
            "each second; a second counts as saturated when the CPU passes its mark or the lag's p90 "
            "(not the largest, drawn here) passes its mark; shaded: seconds in which the generator "
            "was saturated, whose latencies may carry its own delay",
            [
                _Metric("CPU %", lambda e: None if e.cpu is None else float(e.cpu) * 100, None, "max"),
                _Metric("loop lag max ms", lambda e: _num(e.loop_lag_ms), None, "max"),
            ],
        ),
        "errors": (
            "Errors by return code over time",
            "/s",
            "failed steps and non-success return codes per second",
            [_Metric("failed steps/s", lambda e: float(e.failures), 0.0, "mean")]
            + [_Metric(f"rc {c}/s", _rc(c), 0.0, "mean") for c in _rc_codes(timeseries)],
        ),
    }
    paused = any(e.paused for e in timeseries)  # a line of zeros only when someone paused
    return {
        k: (
            t,
            u,
            n,
            [m for m in ms if _has(timeseries, m) and (paused or m.label != "pausing after a failure")],
        )
        for k, (t, u, n, ms) in specs.items()
    }


def _time_chart(
    chart_id: str,
    title: str,
    unit: str,
    note: str,
    columns: Sequence[tuple[str, list[float | None], str]],
    max_points: int,
    *,
    shade: tuple[tuple[float, float], ...] = (),
    marks: tuple[tuple[float, str], ...] = (),
) -> Chart | None:
    """A chart over elapsed seconds from full per-second columns (label, values, how)."""
    columns = [c for c in columns if any(v is not None for v in c[1])]
    if not columns:
        return None
    # At least two seconds on the axis: one point alone would get an arbitrary 0-100 s range.
    seconds = max(2, *(len(c[1]) for c in columns))
    bucket = _bucket_size(seconds, max_points)
    data: list[tuple[float | None, ...]] = [tuple(float(t) for t in range(0, seconds, bucket))]
    for _, values, how in columns:
        padded = list(values) + [None] * (seconds - len(values))
        data.append(tuple(downsample(padded, bucket, how)))
    if bucket > 1:
        how = "highest" if columns[0][2] == "max" else "mean"
        note = (note + "; " if note else "") + f"each point: the {how} of {bucket} seconds"
    return Chart(
        chart_id,
        title,
        note,
        "elapsed",
        unit,
        tuple(c[0] for c in columns),
        tuple(data),
        shade=shade,
        marks=marks,
    )


def _distribution(chart_id: str, title: str, named: Sequence[tuple[str, StepResult]]) -> Chart | None:
    """The HDR percentile spectrum: x = 1/(1-p) (log axis), y = latency in ms (log axis)."""
    xs = tuple(1.0 / (1.0 - p / 100.0) for p in PERCENTILES)
    labels: list[str] = []
    data: list[tuple[float | None, ...]] = [xs]
    for label, step in named:
        if not step.histogram or step.kind in _NOT_LATENCY:
            continue
        hist = step.hdr()
        if hist.get_total_count() == 0:
            continue
        labels.append(label)
        found = hist.get_percentile_to_value_dict(list(PERCENTILES))  # one walk for all (recorders.summary)
        data.append(tuple(max(found.get(p, 0), 1) / 1000.0 for p in PERCENTILES))
    if not labels:
        return None
    note = "latency at each percentile, from the step's HDR histogram (log scales)"
    return Chart(chart_id, title, note, "percentile", "ms", tuple(labels), tuple(data), ylog=True)


def charts(
    results: Sequence[RunResult], masker: Masker | None = None, *, max_points: int = MAX_POINTS
) -> list[Chart]:
    """The charts of one run, or of several runs overlaid (one series per run)."""
    text = masker.text if masker is not None else (lambda s: s)
    if len(results) == 1:
        return _single_charts(results[0], text, max_points) + _population_charts(results[0], text, max_points)
    return _overlay_charts(results, text, max_points)


def _single_charts(result: RunResult, text: Callable[[str], str], max_points: int) -> list[Chart]:
    """One run: its time charts (the generator's with where it counts as saturated), and the
    latency distribution per step."""
    out: list[Chart] = []
    # A check runs one iteration for a fraction of a second: no time to chart.
    ts = result.timeseries if result.settings.mode != "check" else ()
    shade = _saturated(ts)
    bounds = _saturation_bounds(result)
    for chart_id, (title, unit, note, metrics) in _time_metrics(ts).items():
        cols = [(m.label, _dense(ts, m.value, m.fill, rate=m.how == "mean"), m.how) for m in metrics]
        marks: tuple[tuple[float, str], ...] = ()
        if chart_id == "generator" and bounds is not None:
            cpu, lag_ms = float(bounds.cpu), float(bounds.loop_lag_ms)
            marks = (
                (cpu * 100, f"saturated at {cpu:.0%} CPU"),
                (lag_ms, f"saturated at a lag p90 of {lag_ms:g} ms"),
            )
        chart = _time_chart(
            chart_id,
            title,
            unit,
            note,
            cols,
            max_points,
            shade=shade if chart_id in ("latency", "generator") else (),
            marks=marks,
        )
        if chart is not None:
            out.append(chart)
    named = [(text(s.name), s) for s in result.steps]
    if (dist := _distribution("distribution", "Latency distribution per step", named)) is not None:
        out.append(dist)
    return out


#: The charts of a comparison: id, title, unit, and the metric drawn for each run.
_OVERLAYS: tuple[tuple[str, str, str, Callable[[Sequence[SecondSample]], _Metric]], ...] = (
    (
        "p99",
        "p99 latency of every read step over time",
        "ms",
        lambda ts: _Metric("", _lat("p99"), None, "max"),
    ),
    (
        "p50",
        "p50 latency of every read step over time",
        "ms",
        lambda ts: _Metric("", _lat("p50"), None, "max"),
    ),
    ("throughput", "Messages (or steps) per second", "/s", lambda ts: replace(_moved(ts), label="")),
    ("users", "Active virtual users", "", lambda ts: _Metric("", lambda e: _num(e.vus), None, "max")),
    (
        "errors",
        "Failed steps per second",
        "/s",
        lambda ts: _Metric("", lambda e: float(e.failures), 0.0, "mean"),
    ),
)


def _population_charts(result: RunResult, text: Callable[[str], str], max_points: int) -> list[Chart]:
    """A plan: one line per population on each overlay chart, so they are seen side by side."""
    out: list[Chart] = []
    for chart_id, title, unit, metric_of in _OVERLAYS:
        cols = []
        for p in result.populations:
            m = metric_of(p.timeseries)
            if _has(p.timeseries, m):
                cols.append(
                    (
                        text(p.scenario_name),
                        _dense(p.timeseries, m.value, m.fill, rate=m.how == "mean"),
                        m.how,
                    )
                )
        if chart := _time_chart(
            f"population-{chart_id}",
            f"{title} by population",
            unit,
            "one line per population",
            cols,
            max_points,
        ):
            out.append(chart)
    return out


def _overlay_charts(results: Sequence[RunResult], text: Callable[[str], str], max_points: int) -> list[Chart]:
    """Several runs: one line per run on each overlay chart, and each step's distributions."""
    out: list[Chart] = []
    labels = [text(label) for label in run_labels(results)]
    for chart_id, title, unit, metric_of in _OVERLAYS:
        cols = []
        for label, r in zip(labels, results, strict=True):
            m = metric_of(r.timeseries)
            if _has(r.timeseries, m) and r.settings.mode != "check":
                cols.append((label, _dense(r.timeseries, m.value, m.fill, rate=m.how == "mean"), m.how))
        if chart := _time_chart(
            chart_id, title, unit, "one line per run, time since each run's start", cols, max_points
        ):
            out.append(chart)
    for i, name in enumerate(_step_names(results)):
        named = [
            (label, s) for label, r in zip(labels, results, strict=True) for s in r.steps if s.name == name
        ]
        if (
            dist := _distribution(f"distribution-{i}", f"Latency distribution: {text(name)}", named)
        ) is not None:
            out.append(dist)
    return out


# --- HTML -------------------------------------------------------------------------------------


def run_labels(results: Sequence[RunResult]) -> list[str]:
    """Short names of runs in a comparison: ``#1 2026-11-25 20:33:01`` (plus the scenario if they differ)."""
    names = {r.scenario_name for r in results}
    out = []
    for i, r in enumerate(results, 1):
        when = r.started_at.replace("T", " ")[:19]
        out.append(f"#{i} {when}" + (f" {r.scenario_name}" if len(names) > 1 else ""))
    return out


def _step_names(results: Sequence[RunResult]) -> list[str]:
    seen: dict[str, None] = {}
    for r in results:
        for s in r.steps:
            seen.setdefault(s.name, None)
    return list(seen)


class _Html:
    """Escaping (and masking) of every text that goes into the page."""

    def __init__(self, masker: Masker | None) -> None:
        self.masker = masker

    def __call__(self, value: object) -> str:
        text = str(value)
        if self.masker is not None:
            text = self.masker.text(text)
        return html.escape(text, quote=True)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _verdict(result: RunResult) -> str:
    word = console.status_word(result)
    return f'<span class="verdict {word.lower()}">{word}</span>'


def _table(
    head: Sequence[str], rows: Sequence[Sequence[str]], text_cols: frozenset[int] = frozenset()
) -> str:
    """A table from already escaped cells; ``text_cols`` are left-aligned, wrapped text."""
    ths = "".join(
        f'<th class="text">{h}</th>' if i in text_cols else f"<th>{h}</th>" for i, h in enumerate(head)
    )
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="text">{c}</td>' if i in text_cols else f"<td>{c}</td>" for i, c in enumerate(row)
        )
        body.append(f"<tr>{tds}</tr>")
    # In a scrolling box: a wide table (the step table has 17 columns) must not push the page
    # wider than a narrow window.
    rows = "".join(body)
    return f'<div class="table-wrap"><table><thead><tr>{ths}</tr></thead><tbody>{rows}</tbody></table></div>'


def _populations_table(result: RunResult, e: _Html) -> str:
    """A plan's populations side by side: load, users, iterations, rate, plan, verdict."""
    if not result.populations:
        return ""
    rows = []
    for p in result.populations:
        cells = [e(c) for c in console.population_row(p)]
        cells[console.POPULATION_COLUMNS.index("verdict")] = _verdict(p)
        rows.append(cells)
    return "<h2>Populations</h2>" + _table(
        [e(h) for h in console.POPULATION_COLUMNS], rows, text_cols=frozenset({0, 1})
    )


def _generator_table(result: RunResult, e: _Html) -> str:
    """The load generator's health per worker (or shard): what each process's CPU and event loop
    went through, so a saturated one is seen by name; nothing for a check run."""
    load = result.settings.load
    gen = load.generator if load is not None else None
    if gen is None or not gen.workers:
        return ""
    rows = []
    for w in gen.workers:
        lag = w.loop_lag_ms or {}
        rows.append(
            [
                e(w.name),
                str(w.seconds),
                f"{w.cpu_mean:.0%}",
                f"{w.cpu_max:.0%}",
                _ms(lag.get("p99")),
                _ms(lag.get("max")),
                f'<span class="fail-text">{w.saturated_seconds}</span>' if w.saturated_seconds else "0",
                str(w.send_blocked_max),
            ]
        )
    head = [
        "worker",
        "seconds",
        "CPU mean",
        "CPU max",
        "loop lag p99 ms",
        "loop lag max ms",
        "saturated s",
        "send-blocked max",
    ]
    return "<h3>Load generator, per worker</h3>" + _table(head, rows, frozenset({0}))


def _rc_cell(step: StepResult) -> str:
    return " ".join(f"{code}:{n}" for code, n in step.rc.items()) or "-"


def _steps_table(result: RunResult, e: _Html) -> str:
    received = any(s.kind == "receive" for s in result.steps)  # a column for the receive steps
    head = [
        "step",
        "kind",
        "line",
        "count",
        "ok",
        "failures",
        "skipped",
        "pending",
        *(("received",) if received else ()),
        "rc",
        "p50",
        "p90",
        "p95",
        "p99",
        "p99.9",
        "max",
        "mean",
    ]
    rows = []
    for s in result.steps:
        lat = s.latency_ms
        values = [
            _ms(getattr(lat, key)) if lat else "-"
            for key in ("p50", "p90", "p95", "p99", "p999", "max", "mean")
        ]
        fail = f'<span class="fail-text">{s.failures}</span>' if s.failures else "0"
        rows.append(
            [
                e(s.name),
                e(s.kind),
                str(s.line),
                str(s.count),
                str(s.ok),
                fail,
                str(s.skipped),
                f'<span class="fail-text">{s.pending}</span>'
                if s.pending and not s.count
                else str(s.pending),
                *((f"{s.received:,}" if s.kind == "receive" else "-",) if received else ()),
                e(_rc_cell(s)),
                *values,
            ]
        )
    if not rows:
        return '<p class="none">No steps ran.</p>'
    notes = [
        "Latency in milliseconds. count: executions that ended; pending: still in flight when the "
        f"run ended. {e(console.LATENCY_LEGEND[0].upper() + console.LATENCY_LEGEND[1:])}."
    ]
    for s in result.steps:
        if s.pending:
            notes.append(
                f"{e(s.name)}: {s.pending} pending, waited up to {_ms(s.pending_max_ms)} ms "
                f"(mean {_ms(s.pending_mean_ms)} ms)."
            )
        if s.kind == "receive":
            notes.append(
                f"{e(s.name)}: received {s.received:,} messages; the longest wait for one "
                f"{_ms(s.received_gap_max_ms)} ms (a receive's latency is how long it lasted)."
            )
        if s.closes:
            closes = ", ".join(f"{n} &times; {e(key)}" for key, n in s.closes.items())
            notes.append(f"{e(s.name)}: peer closed: {closes}.")
    meta = "".join(f'<p class="meta">{n}</p>' for n in notes)
    return _table(head, rows, frozenset({0, 1, 9 if received else 8})) + meta


_PERCENTILE_COLUMNS = ("p50", "p90", "p95", "p99", "p999", "max", "mean")


def _latency_cells(summary: LatencySummary) -> list[str]:
    """A latency's cells in the order of the tables' headers (p50 ... p99.9, max, mean)."""
    return [_ms(getattr(summary, k)) for k in _PERCENTILE_COLUMNS]


def _delivery_table(result: RunResult, e: _Html) -> str:
    rows = [
        [e(s.name), *_latency_cells(s.delivery_ms), f"{s.delivery_ahead:,}"]
        for s in result.steps
        if s.delivery_ms is not None
    ]
    if not rows:
        return ""
    return (
        "<h3>Delivery latency of stamped messages</h3>"
        '<p class="meta">Reads and receives with <code>latency_from</code>: from the send time stamped '
        "in the message (the sender's clock) to its parse here (this machine's wall clock): publish to "
        "subscriber in a fan-out. Across machines it is as good as their clocks' agreement; "
        "<em>ahead</em> counts messages stamped after they arrived (recorded as 0).</p>"
        + _table(["step", "p50", "p90", "p95", "p99", "p99.9", "max", "mean", "ahead"], rows, frozenset({0}))
        + _reach_table(result, e)
    )


def _reach_table(result: RunResult, e: _Html) -> str:
    rows = [
        [
            e(s.name),
            f"{r.messages:,}",
            f"{r.receivers_min:,}",
            f"{r.receivers_median:,g}",
            f"{r.receivers_max:,}",
            *(_ms(getattr(r.time_ms, k)) if r.time_ms else "-" for k in ("p50", "p99", "max")),
            f"{r.overflow:,}",
        ]
        for s in result.steps
        if (r := s.reach) is not None
    ]
    if not rows:
        return ""
    return (
        "<h3>Reach of messages</h3>"
        '<p class="meta">Reads with <code>latency_from.id</code>: how many reads received each message '
        "(fewest, median, most over the messages), and per message the time until the last of them did "
        "(its largest delivery latency). Messages published before every reader joined, or after some "
        "left, reach fewer.</p>"
        + _table(
            ["step", "messages", "fewest", "median", "most", "until last p50", "p99", "max", "over cap"],
            rows,
            frozenset({0}),
        )
    )


def _response_table(result: RunResult, e: _Html) -> str:
    rows = [[e(s.name), *_latency_cells(s.response_ms)] for s in result.steps if s.response_ms is not None]
    if not rows:
        return ""
    return (
        "<h3>Response time of reads</h3>"
        '<p class="meta">From the start of the write step that asked (or of the read, when nothing '
        "was written first) to the read's end: what the scenario's code saw, the load generator's own "
        "queueing included; the steps table's read latency runs from the request handed to the kernel "
        "to the answer parsed.</p>"
        + _table(["step", "p50", "p90", "p95", "p99", "p99.9", "max", "mean"], rows, frozenset({0}))
    )


def _connect_table(result: RunResult, e: _Html) -> str:
    rows = []
    for s in result.steps:
        for phase, lat in (s.connect_ms or {}).items():
            rows.append([e(s.name), e(phase), _ms(lat.p50), _ms(lat.p99), _ms(lat.max)])
    if not rows:
        return ""
    return "<h3>Connection set-up</h3>" + _table(
        ["step", "phase", "p50", "p99", "max"], rows, frozenset({0, 1})
    )


#: A threshold that a count must reach (``iterations.count >= 1000``): short of it in the middle
#: of a run is "not reached yet", not lost (counts only grow; the end of the run judges it).
_GROWING = re.compile(r"\.(count|completed|received)\s*>=?\s")
NOT_YET = "not reached yet: "


def so_far(result: RunResult) -> RunResult:
    """``result`` as the live page judges it mid-run: a count still short of what it must reach
    (``_GROWING``) is "not reached yet", not lost, and does not fail the verdict so far (nor a
    population's, nor the plan's); anything else that fails still does. The final report is the
    unchanged result."""
    populations = tuple(so_far(p) for p in result.populations)
    thresholds = tuple(
        replace(t, passed=True, message=NOT_YET + t.message)
        if not t.passed and t.value is not None and _GROWING.search(t.expression)
        else t
        for t in result.thresholds
    )
    judged = replace(result, thresholds=thresholds, populations=populations)
    if result.passed:
        return judged
    clean = (
        not result.problems
        and not result.interrupted
        and not result.error
        and all(t.passed for t in thresholds)
        and all(p.passed for p in populations)
        and all(s.failures == 0 for s in result.steps)
    )
    return replace(judged, passed=True, exit_code=0) if clean else judged


def _thresholds_table(result: RunResult, e: _Html, live: bool = False) -> str:
    if not result.thresholds:
        return '<p class="none">No thresholds in this scenario.</p>'
    rows = []
    for t in result.thresholds:
        word = '<span class="pass-text">pass</span>' if t.passed else '<span class="fail-text">LOST</span>'
        if live and t.message.startswith(NOT_YET):
            word = '<span class="no-data">not reached yet</span>'
        if t.value is None:  # nothing measured (yet, on the live page): say so beside the verdict
            word += ' <span class="no-data">no data</span>'
        # The message states observed and limit in the threshold's own unit ("0.101ms < 50ms").
        detail = t.message.removeprefix(NOT_YET) or (
            "no data" if t.value is None else f"observed {t.value:g}"
        )
        where = "plan check" if t.default else str(t.line) if t.line else "--threshold"
        rows.append([word, e(t.expression), e(where), e(detail)])
    return _table(["", "threshold", "line", "observed"], rows, frozenset({1, 3}))


def _errors(result: RunResult, e: _Html) -> str:
    parts = []
    rows = [
        [e(s.name), str(s.line), str(err.rc), str(err.count), e(err.message)]
        for s in result.steps
        for err in s.errors
    ]
    if rows:
        parts.append(_table(["step", "line", "rc", "count", "message"], rows, frozenset({4})))
    if result.failures:
        frows = [
            [e(f.step), str(f.line), str(f.count), e(f.message), e(f.expected), e(f.actual)]
            for f in result.failures
        ]
        parts.append("<h3>Failed expectations</h3>")
        parts.append(
            _table(["step", "line", "count", "message", "expected", "actual"], frows, frozenset({3, 4, 5}))
        )
        if result.failures_dropped:
            parts.append(f'<p class="meta">{result.failures_dropped} more failures not kept.</p>')
    return "".join(parts) or '<p class="none">No errors.</p>'


def _settings(result: RunResult, e: _Html) -> str:
    rows = [
        ["scenario file", e(result.scenario_file)],
        ["target", e(result.target or "-")],
        ["started at (UTC)", e(result.started_at)],
        ["duration", e(f"{result.duration_s:.3f} s")],
        ["iterations", e(_iterations(result))],
        [
            "TLS",
            e("verified" if result.tls.verified else "not verified")
            + (
                e(", ignored errors: " + ", ".join(result.tls.ignored_errors))
                if result.tls.ignored_errors
                else ""
            ),
        ],
        ["wsload version", e(result.wsload_version)],
    ]
    for key, value in encode_settings(result.settings).items():
        if isinstance(value, Mapping):  # e.g. the load figures: one row each, "load.workers"
            rows += [[e(f"{key}.{k}"), e(_setting(v))] for k, v in value.items()]
        else:
            rows.append([e(key), e(_setting(value))])
    return _table(["setting", "value"], rows, frozenset({0, 1}))


def _saturation_bounds(result: RunResult) -> SaturationBounds | None:
    """When the run's load generator counted as saturated (drawn on the generator chart)."""
    load = result.settings.load
    gen = load.generator if load is not None else None
    return gen.saturated_when if gen is not None else None


def _iterations(result: RunResult) -> str:
    it = result.iterations
    return f"{it.completed} completed, {it.failed} failed, {it.interrupted} interrupted"


def _setting(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and all(isinstance(v, (int, float)) for v in value.values()):
        return ", ".join(f"{k} {v:g}" for k, v in value.items())  # percentiles: "p50 0.1, p99 0.4"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _load_line(result: RunResult) -> str:
    """The load figures at a glance (from ``settings.load`` of a load run), or ``""``."""
    load = result.settings.load
    if load is None:
        return ""
    parts = []
    if load.model:
        parts.append(f"{load.model} model")
    if load.workers:
        parts.append(f"{load.workers} worker(s)")
    if load.vus_max_active is not None:
        parts.append(f"max {load.vus_max_active:,} VUs")
    if load.connections_max is not None:
        parts.append(f"max {load.connections_max:,} connections")
    if not load.hold:  # held users end no iteration: a rate of 0 would read as a failure
        of = f" of {load.rate:g}/s" if load.rate else ""
        parts.append(f"{load.achieved_rate:g} iterations/s achieved{of}")
    if load.plan is not None and load.plan.delivered is not None:
        parts.append(f"plan delivered {load.plan.delivered:.1%}")
    if load.lag_ms is not None and load.lag_ms.get("p99") is not None:
        parts.append(f"schedule lag p99 {load.lag_ms['p99']:g} ms")
    if load.dropped:
        parts.append(f"{load.dropped:,} starts dropped")
    if load.failure_pauses:
        parts.append(f"{load.failure_pauses:,} pauses after failed iterations ({load.failure_pause_s:g} s)")
    gen = load.generator
    if gen is not None and gen.workers:
        glag = gen.loop_lag_ms or {}
        parts.append(
            f"generator CPU up to {float(gen.cpu_max or 0):.0%}, "
            f"loop lag p99 {glag.get('p99', 0):g} ms, "
            f"{gen.saturated_seconds} of {gen.seconds} s saturated"
            + (f" ({float(gen.samples_in_saturated):.0%} of the samples)" if gen.saturated_seconds else "")
        )
    if load.stop_reason:
        parts.append(str(load.stop_reason))
    return "load: " + " · ".join(parts) if parts else ""


def _source(result: RunResult, source: str | None, e: _Html) -> str:
    text = source
    if not text:
        return f'<p class="none">The result holds no scenario text; it ran {e(result.scenario_file)}.</p>'
    return (
        '<p class="meta">As written (secrets masked); what the command line changed (--rate, --vus, '
        "--duration, --threshold ...) is in Settings and the load summary.</p>"
        f'<pre class="source">{e(text)}</pre>'
    )


def _charts_html(chart_list: Sequence[Chart], e: _Html, missing: Sequence[str] = ()) -> str:
    boxes = []
    for c in chart_list:
        note = f'<p class="chart-note">{e(c.note)}</p>' if c.note else ""
        boxes.append(
            f'<div class="chart-box"><h3>{e(c.title)}</h3>{note}'
            f'<div class="chart" id="chart-{e(c.id)}"></div></div>'
        )
    if missing:
        boxes.append(f'<p class="none">Not recorded in this run: {e(", ".join(missing))}.</p>')
    if not boxes:
        return '<p class="none">No time series in this result.</p>'
    hint = (
        '<p class="meta screen-only">Hover to read values (the time charts follow together), click a '
        "legend entry to hide or show its line, drag to zoom, double-click to zoom out.</p>"
        if chart_list
        else ""
    )
    return f'{hint}<div class="charts">{"".join(boxes)}</div>'


_TITLES = {
    "latency": "latency over time",
    "throughput": "messages per second",
    "users": "active virtual users and connections",
    "generator": "load generator health (load runs)",
    "errors": "errors over time",
    "distribution": "latency distribution (no latency histograms)",
}


def _single(
    result: RunResult, source: str | None, chart_list: Sequence[Chart], e: _Html, live: bool = False
) -> str:
    present = {c.id for c in chart_list}
    missing = [title for cid, title in _TITLES.items() if cid not in present]
    other = result.error
    for problem in result.problems:
        other = other.replace(problem, "")
    other = "; ".join(x.strip() for x in other.split("; ") if x.strip())
    error = f'<p class="error-box">{e(other)}</p>' if other else ""
    if result.problems:
        items = "".join(f"<li>{e(p)}</li>" for p in result.problems)
        error += f'<div class="error-box"><b>Problems (each fails the run)</b><ul>{items}</ul></div>'
    if result.settings.mode == "check":
        missing = [m for m in missing if m in (_TITLES["distribution"],)] + [
            "time charts (a check runs once; load runs have them)"
        ]
    load = f'<p class="meta">{e(line)}</p>' if (line := _load_line(result)) else ""
    interrupted = (
        '<p class="error-box">Interrupted: the report holds what was measured until the signal.</p>'
        if result.interrupted
        else ""
    )
    return (
        f"<h1>{_verdict(result)}{e(result.scenario_name)}</h1>"
        f'<p class="meta">{e(console.verdict_line(result))}</p>'
        f'<p class="meta">target <b>{e(result.target or "-")}</b> · started <b>{e(result.started_at)}</b> · '
        f"duration <b>{result.duration_s:.3f} s</b> · iterations <b>{e(_iterations(result))}</b></p>"
        f"{load}{error}{interrupted}"
        f"{_populations_table(result, e)}"
        f"<h2>Thresholds</h2>{_thresholds_table(result, e, live)}"
        f"<h2>Steps</h2>{_steps_table(result, e)}{_response_table(result, e)}"
        f"{_delivery_table(result, e)}{_connect_table(result, e)}{_generator_table(result, e)}"
        f"<h2>Charts</h2>{_charts_html(chart_list, e, missing)}"
        f"<h2>Errors</h2>{_errors(result, e)}"
        f"<h2>Scenario file</h2>{_source(result, source, e)}"
        f"<h2>Settings</h2>{_settings(result, e)}"
    )


def _change(first: float | None, last: float | None) -> str:
    if first is None or last is None or first <= 0:
        return "-"
    pct = (last - first) / first * 100
    css = "worse" if pct > 10 else "better" if pct < -10 else ""
    return f'<span class="{css}">{pct:+.0f}%</span>' if css else f"{pct:+.0f}%"


def _comparison_runs(results: Sequence[RunResult], labels: Sequence[str], e: _Html) -> str:
    """The runs side by side: verdict, scenario, target, duration, load, counts, error."""
    head = ["", *(e(label) for label in labels)]

    def row(name: str, cell: Callable[[RunResult], str]) -> list[str]:
        return [name, *(cell(r) for r in results)]

    return _table(
        head,
        [
            row("verdict", _verdict),
            row("scenario", lambda r: e(f"{r.scenario_name} ({r.scenario_file})")),
            row("target", lambda r: e(r.target or "-")),
            row("duration", lambda r: f"{r.duration_s:.3f} s"),
            row("iterations", lambda r: e(_iterations(r))),
            row("load", lambda r: e(_load_line(r).removeprefix("load: ") or "-")),
            row(
                "steps run / failed",
                lambda r: f"{sum(s.count for s in r.steps)} / {sum(s.failures for s in r.steps)}",
            ),
            row("thresholds lost", lambda r: str(sum(1 for t in r.thresholds if not t.passed))),
            row("error", lambda r: e(r.error or "-")),
            row("wsload", lambda r: e(r.wsload_version)),
        ],
        frozenset(range(len(head))),
    )


def _comparison_steps(results: Sequence[RunResult], labels: Sequence[str], e: _Html) -> str:
    """Each step's counts and latencies per run, with the change from the first run to the last."""
    step_rows: list[list[str]] = []
    for name in _step_names(results):
        steps = [next((s for s in r.steps if s.name == name), None) for r in results]
        metrics: list[tuple[str, Callable[[StepResult], float | None]]] = [
            ("count", lambda s: float(s.count)),
            ("failures", lambda s: float(s.failures)),
        ]
        for label, key in _LAT_ROWS:
            metrics.append((f"{label} ms", partial(_step_latency, key=key)))
        for i, (metric, get) in enumerate(metrics):
            values = [get(s) if s is not None else None for s in steps]
            cells = [_ms(v) if "ms" in metric else ("-" if v is None else f"{v:.0f}") for v in values]
            change = _change(values[0], values[-1]) if "ms" in metric else "-"
            step_rows.append([e(name) if i == 0 else "", e(metric), *cells, change])
    if not step_rows:
        return '<p class="none">No steps.</p>'
    step_head = ["step", "", *(e(label) for label in labels), "last vs first"]
    return _table(step_head, step_rows, frozenset({0, 1}))


def _comparison_thresholds(results: Sequence[RunResult], labels: Sequence[str], e: _Html) -> str:
    """Every threshold of any run, and how it came out in each."""
    threshold_rows = []
    for expr in dict.fromkeys(t.expression for r in results for t in r.thresholds):
        cells = []
        for r in results:
            t = next((t for t in r.thresholds if t.expression == expr), None)
            if t is None:
                cells.append("-")
            else:
                word = (
                    '<span class="pass-text">pass</span>'
                    if t.passed
                    else '<span class="fail-text">LOST</span>'
                )
                cells.append(f"{word} {e(t.message)}" if t.message else word)
        threshold_rows.append([e(expr), *cells])
    if not threshold_rows:
        return '<p class="none">No thresholds.</p>'
    return _table(
        ["threshold", *(e(label) for label in labels)], threshold_rows, frozenset(range(len(labels) + 1))
    )


def _comparison(
    results: Sequence[RunResult], sources: Sequence[str | None], chart_list: Sequence[Chart], e: _Html
) -> str:
    labels = run_labels(results)
    details = []
    for label, r, src in zip(labels, results, sources, strict=True):
        details.append(
            f"<h3>{_verdict(r)}{e(label)}: {e(r.scenario_name)}</h3>"
            f"{_errors(r, e)}<h3>Settings</h3>{_settings(r, e)}"
            f"<h3>Scenario file</h3>{_source(r, src, e)}"
        )
    return (
        f"<h1>Comparison of {len(results)} runs</h1>"
        f'<p class="meta">Latency changes of more than 10% between the first and the last run are marked.</p>'
        f"<h2>Runs</h2>{_comparison_runs(results, labels, e)}"
        f"<h2>Thresholds</h2>{_comparison_thresholds(results, labels, e)}"
        f"<h2>Steps</h2>{_comparison_steps(results, labels, e)}"
        f"<h2>Charts</h2>{_charts_html(chart_list, e)}"
        f"<h2>Each run</h2>{''.join(details)}"
    )


def _step_latency(step: StepResult, key: str) -> float | None:
    summary: LatencySummary | None = step.latency_ms
    return float(getattr(summary, key)) if summary is not None else None


@cache
def _asset(*parts: str) -> str:
    return resources.files("runner.reports").joinpath(*parts).read_text(encoding="utf-8")


def _script_safe(code: str) -> str:
    """Inline code cannot end its ``<script>``/``<style>`` element early."""
    return code.replace("</script", "<\\/script").replace("</style", "<\\/style").replace("<!--", "<\\!--")


def _json_safe(value: Any) -> str:
    """JSON for a ``<script type="application/json">``: no ``<``, ``>`` or ``&`` can close it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(
    results: RunResult | Sequence[RunResult],
    masker: Masker | None = None,
    *,
    sources: Sequence[str | None] | None = None,
    max_points: int = MAX_POINTS,
) -> str:
    """The HTML document of one run, or of two or more runs compared side by side.

    ``sources``: the scenario text each run ran (already masked by the loader; masked again here),
    for results that do not carry it.
    """
    runs = [results] if isinstance(results, RunResult) else list(results)
    if not runs:
        raise ValueError("no results to render")
    srcs = list(sources) if sources is not None else [None] * len(runs)
    if len(srcs) != len(runs):
        raise ValueError("one source (or None) per result")
    e = _Html(masker)
    chart_list = charts(runs, masker, max_points=max_points)
    if len(runs) == 1:
        body = _single(runs[0], srcs[0], chart_list, e)
        title = f"{console.status_word(runs[0])} {runs[0].scenario_name}: wsload report"
    else:
        body = _comparison(runs, srcs, chart_list, e)
        title = f"wsload comparison of {len(runs)} runs"
    data = {"charts": [c.to_json() for c in chart_list]}
    return _page(e(title), body, _json_safe(data), len(chart_list))


def _page(title: str, body: str, data: str, charts_expected: int, live_js: str = "") -> str:
    """The one page template of the report and the live dashboard (escaped parts in)."""
    return Template(_asset("templates", "report.html")).substitute(
        version=html.escape(__version__),
        title=title,
        uplot_css=_script_safe(_asset("vendor", "uPlot.min.css")),
        css=_script_safe(_asset("templates", "report.css")),
        charts_expected=str(charts_expected),
        body=body,
        data=data,
        uplot_js=_script_safe(_asset("vendor", "uPlot.iife.min.js")),
        js=_script_safe(_asset("templates", "report.js")),
        live_js=_script_safe(live_js),
    )


def report_parts(
    result: RunResult,
    masker: Masker | None = None,
    *,
    max_points: int = MAX_POINTS,
    source: str | None = None,
    live: bool = False,
) -> dict[str, Any]:
    """One run's report as the live dashboard sends it each second: the title, the body's HTML
    and the charts' data, exactly what ``render`` puts in the page (masked the same way)."""
    e = _Html(masker)
    if live:
        # The verdict so far (``so_far``), and the charts without the second still going on: its
        # counts are a fraction of a second's (the chart fell off a cliff at every refresh).
        now = int(result.duration_s)
        result = replace(so_far(result), timeseries=tuple(s for s in result.timeseries if s.t < now))
    chart_list = charts([result], masker, max_points=max_points)
    return {
        "title": e(f"{console.status_word(result)} {result.scenario_name}: wsload report"),
        "body": _single(result, source, chart_list, e, live),
        "data": {"charts": [c.to_json() for c in chart_list]},
    }


def render_live_page() -> str:
    """The live dashboard's page: the report's page with nothing measured yet, and the script
    that replaces its body with each second's report (``templates/live.js``)."""
    body = (
        '<h1><span class="verdict">WAIT</span>waiting for the first second of the run</h1>'
        '<p class="meta">This page shows the run as it goes on, and its report when it ends.</p>'
    )
    return _page("wsload live", body, "", 0, _asset("templates", "live.js"))
