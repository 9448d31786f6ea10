"""The HTML report: one self-contained file, rendered in headless Chromium without script errors and
with data in every chart (a real run and a synthetic hour-long one), escaped, masked, downsampled."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any

import pytest
from browser.chromium import print_pdf, render_status, screenshot
from browser.synthetic import HOSTILE, ramp
from jsonschema import Draft202012Validator

from runner.cli import main
from runner.reports import html
from runner.reports.masking import Masker
from runner.results.codec import decode, encode
from runner.results.result import SecondSample

ROOT = Path(__file__).resolve().parent.parent
REPORT_SCHEMA = json.loads((ROOT / "runner" / "schemas" / "report.schema.json").read_text())
TIME_CHARTS = ("latency", "throughput", "users", "errors", "generator")
_DATA = re.compile(r'<script type="application/json" id="wsload-data">(.*?)</script>', re.S)


def _second(t: int, steps: int, partial: float | None = None) -> SecondSample:
    """A second of a series with only its step count (and the share of it the run covered)."""
    return SecondSample(t=t, starts=0, steps=steps, failures=0, rc={}, partial=partial)


def _charts(page: str) -> list[dict[str, Any]]:
    """The chart specs embedded in the page's JSON data block."""
    match = _DATA.search(page)
    assert match is not None
    charts: list[dict[str, Any]] = json.loads(match.group(1))["charts"]
    return charts


def _assert_rendered(page: Path, expected: set[str]) -> None:
    body, charts = render_status(page)
    assert body.get("data-render") == "ok", body.get("data-error", body)
    assert set(charts) == expected
    assert body["data-charts"] == body["data-charts-expected"] == str(len(expected))
    for chart_id, attrs in charts.items():
        assert int(attrs.get("data-points", "0")) > 0, chart_id
        assert attrs.get("data-drawn") == "1", chart_id


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``wsload run scenarios/load.yaml --check --html --json``: one check run on the embedded server."""
    out = tmp_path_factory.mktemp("real")
    code = main(
        [
            "run",
            "scenarios/load.yaml",
            "--check",
            "--report-dir",
            "",
            "--json",
            str(out / "r.json"),
            "--html",
            str(out / "r.html"),
            "-q",
        ]
    )
    assert code == 0
    return out / "r.html", out / "r.json"


def test_real_run_renders_in_chromium_with_data_in_every_chart(real_run: tuple[Path, Path]) -> None:
    """A bundled scenario's report renders in Chromium: no script error, every chart drawn with data."""
    page, _ = real_run
    # A check runs once, for a fraction of a second: no time charts (they were drawn nearly
    # empty), and the report says so.
    _assert_rendered(page, {"distribution"})
    text = page.read_text()
    assert "Not recorded in this run: time charts (a check runs once; load runs have them)." in text
    assert screenshot(page, "html-report-check-run.png").stat().st_size > 10_000


def test_real_load_run_renders_every_chart(tmp_path: Path) -> None:
    """A short real load run (4 VUs, 3 s): all five charts drawn in Chromium, the VU chart from the engine."""
    page = tmp_path / "load.html"
    # load.yaml ramps over 2 s: the 4th user starts at 1.5 s, so the sample at 2 s sees all 4.
    argv = ["run", "scenarios/load.yaml", "--vus", "4", "--duration", "3s", "--report-dir", ""]
    assert main([*argv, "-q", "--html", str(page)]) == 0
    _assert_rendered(page, {*TIME_CHARTS, "distribution"})
    users = next(c for c in _charts(page.read_text()) if c["id"] == "users")
    assert max(v for v in users["data"][1] if v is not None) == 4
    assert "load: closed model" in page.read_text()
    screenshot(page, "html-report-load-run.png")


def test_real_run_report_content(real_run: tuple[Path, Path]) -> None:
    """Verdict, thresholds, each step with its percentiles, the scenario text and settings are in the page."""
    page, json_path = real_run
    text = page.read_text()
    result = decode(json.loads(json_path.read_text()))
    assert '<span class="verdict pass">PASS</span>echo under load' in text
    for t in result.thresholds:
        assert escape(t.expression) in text
    for step in result.steps:
        assert f"<td>{escape(step.name)}</td>" in text.replace('<td class="text">', "<td>")
    read = next(s for s in result.steps if s.kind == "read")
    assert read.latency_ms is not None and f"<td>{read.latency_ms.p999:.3f}</td>" in text
    assert "name: echo under load" in text  # the scenario as it ran
    assert "read_timeout_s" in text and result.wsload_version in text
    labels = {c["id"]: c["series"] for c in _charts(text)}
    assert labels["distribution"] == [s.name for s in result.steps if s.histogram and s.kind != "sleep"]


def test_hour_long_run_renders_every_chart_and_stays_small(tmp_path: Path) -> None:
    """A synthetic 1-hour load run: all five charts drawn in Chromium, each series at most 1,200 points."""
    result = ramp(3600)
    Draft202012Validator(REPORT_SCHEMA).validate(encode(result))  # the synthetic run fits the contract
    page = tmp_path / "hour.html"
    text = html.render(result)
    page.write_text(text)
    assert len(text.encode()) < 400_000
    for chart in _charts(text):
        assert all(len(column) <= html.MAX_POINTS for column in chart["data"])
    _assert_rendered(page, {*TIME_CHARTS, "distribution"})
    screenshot(page, "html-report-hour.png")
    _, pages = print_pdf(page, "html-report-hour.pdf")
    assert 1 <= pages <= 6  # A4 with the print styles: summary, tables and five charts
    assert "load: closed model · 2 worker(s) · max 200 VUs · max 200 connections" in text
    assert "<td>load.iteration_ms</td><td>p50 1.2, p99 9.5</td>" in text.replace('<td class="text">', "<td>")
    series = {c["id"]: c["series"] for c in _charts(text)}
    assert series["throughput"] == ["messages/s", "starts/s", "dropped starts/s"]
    assert series["users"] == ["active VUs", "open connections"]


def test_comparison_renders_in_chromium(tmp_path: Path) -> None:
    """Two runs side by side: one line per run in each chart, a distribution per step, all drawn."""
    page = tmp_path / "cmp.html"
    text = html.render([ramp(120), ramp(90, seed=2, started_at="2026-11-25T21:00:00.000Z")])
    page.write_text(text)
    charts = {c["id"]: c for c in _charts(text)}
    assert charts["p99"]["series"] == ["#1 2026-11-25 20:00:00", "#2 2026-11-25 21:00:00"]
    assert len(charts["p99"]["data"][0]) == 120  # the longer run sets the time axis
    _assert_rendered(
        page, {"p99", "p50", "throughput", "users", "errors", "distribution-0", "distribution-1"}
    )
    screenshot(page, "html-report-comparison.png")


def test_report_is_one_file_without_external_references() -> None:
    """No script, stylesheet, image or font is loaded from anywhere: the report opens offline."""
    text = html.render(ramp(30))
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert "<link" not in text and "@import" not in text
    assert re.search(r"<script>\s*!?function|<script>[^<]*uPlot", text)  # uPlot inlined, not linked


def test_hostile_text_is_escaped_everywhere() -> None:
    """A step name and error holding ``</script>`` and markup appear only escaped; the data block parses."""
    text = html.render(ramp(30))
    assert HOSTILE not in text and "<img" not in text
    assert escape(HOSTILE) in text
    labels = [c["series"] for c in _charts(text) if c["id"] == "distribution"]
    assert labels == [["open main", f"read {HOSTILE}"]]


def test_secrets_are_masked() -> None:
    """Text passed through the masker: a secret in the run's error, a step name and the source never shows."""
    secret = "s3cr3t-t0ken"
    result = ramp(30)
    result = replace(
        result,
        error=f"rejected token {secret}",
        steps=(replace(result.steps[0], name=f"open with {secret}"), *result.steps[1:]),
    )
    text = html.render(result, Masker([secret]), sources=[f"token: {secret}"])
    assert secret not in text
    assert "rejected token ***" in text and "open with ***" in text and "token: ***" in text


def test_downsample_keeps_rates_as_means_and_latency_as_worst() -> None:
    """Buckets of seconds: rates become their mean, latency the worst second, empty buckets stay gaps."""
    values: list[float | None] = [1.0, 3.0, None, 5.0, None, None]
    assert html.downsample(values, 2, "mean") == [2.0, 5.0, None]
    assert html.downsample(values, 2, "max") == [3.0, 5.0, None]
    assert html.downsample(values, 1, "max") == values


def test_gaps_and_missing_series_are_tolerated() -> None:
    """Seconds missing from the series are zero rates and latency gaps; absent series make no chart."""
    result = decode(
        {
            **encode(ramp(1)),
            "timeseries": [
                {
                    "t": 0,
                    "starts": 1,
                    "steps": 2,
                    "failures": 0,
                    "rc": {},
                    "latency_ms": {"p50": 1.0, "p99": 2.0},
                },
                {"t": 3, "starts": 2, "steps": 4, "failures": 1, "rc": {"-1": 1}, "latency_ms": None},
            ],
        }
    )
    charts = {c.id: c for c in html.charts([result])}
    assert set(charts) == {"latency", "throughput", "errors", "distribution"}
    assert charts["throughput"].data[1] == (2.0, 0.0, 0.0, 4.0)
    assert charts["latency"].series == ("p50", "p99")
    assert charts["latency"].data[1] == (1.0, None, None, None)
    assert charts["errors"].series == ("failed steps/s", "rc -1/s")


def test_a_one_second_run_gets_a_two_second_axis() -> None:
    """A check run within one second: its single point sits on a 0-1 s axis (not an arbitrary range)."""
    charts = {c.id: c for c in html.charts([ramp(1)])}
    assert charts["throughput"].data[0] == (0.0, 1.0)
    assert charts["throughput"].data[1] == (2.0, None)


def test_the_step_table_fits_a_900_pixel_window(tmp_path: Path) -> None:
    """At 900 px the page does not scroll sideways: wide tables scroll in their own box."""
    from browser.chromium import _chromium

    text = html.render(ramp(60))
    probe = "<script>document.body.setAttribute('data-width', document.documentElement.scrollWidth)</script>"
    page = tmp_path / "narrow.html"
    page.write_text(text.replace("</body>", probe + "</body>"))
    proc = _chromium(
        "--window-size=900,1200", "--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri()
    )
    width = re.search(r'data-width="(\d+)"', proc.stdout)
    assert width is not None, proc.stderr[-1000:]
    assert int(width.group(1)) <= 900


def test_the_last_partial_second_is_not_drawn_as_a_collapse() -> None:
    """A run that ended 0.5 s into its last second: that second's rates are drawn per whole
    second (its count doubled), and a sliver of a second is left out, not drawn as a drop."""
    entries = [_second(0, 100), _second(1, 100), _second(2, 50, partial=0.5)]
    values = html._dense(entries, lambda e: float(e.steps), 0.0, rate=True)
    assert values == [100.0, 100.0, 100.0]
    sliver = [*entries[:2], _second(2, 5, partial=0.05)]
    assert html._dense(sliver, lambda e: float(e.steps), 0.0, rate=True) == [100.0, 100.0, None]


def test_saturated_seconds_are_shaded_and_the_generator_chart_shows_its_bounds() -> None:
    """Seconds in which the generator was saturated are shaded in the latency and generator
    charts; the generator chart draws the 90% CPU and 10 ms lag bounds."""
    result = ramp(120)
    charts = {c["id"]: c for c in _charts(html.render(result))}
    saturated = [e.t for e in result.timeseries if e.saturated]
    assert charts["latency"]["shade"] == [[saturated[0], saturated[-1] + 1]]
    assert charts["generator"]["shade"] == charts["latency"]["shade"]
    assert [m[0] for m in charts["generator"]["marks"]] == [90.0, 10.0]


def test_comparison_charts_name_what_they_measure() -> None:
    """The comparison's latency charts say which steps they are of."""
    charts = {c["id"]: c for c in _charts(html.render([ramp(30), ramp(30, seed=2)]))}
    assert charts["p99"]["title"] == "p99 latency of every read step over time"
