"""The live dashboard (``wsload run --dashboard``) in a real headless Chromium: the page connects
within a second of the start, its numbers and charts move, a threshold flips from passing to
failing on it, it ends as the run's report, a page opened late catches up, the stop button
stops the run only with the token, and nothing secret reaches it."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import scaled
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("WSLOAD_CHROMIUM", "/usr/bin/chromium")

ECHO = """\
name: live echo
target: embedded
connections:
  main: {{url: /echo, headers: {{Authorization: "Bearer ${{DASH_SECRET}}"}}}}
steps:
  - open: main
  - repeat:
      times: 5
      steps:
        - write: {{connection: main, text: "hello"}}
        - read: {{connection: main, timeout: 2s}}
        - sleep: 20ms
  - close: main
load: {{vus: 4, duration: {duration}}}
thresholds:
  - read.p99 < 1s
  - {threshold}
"""


class Run:
    """``wsload run`` in a process of its own with a dashboard; ``url`` as it printed it."""

    def __init__(
        self, tmp_path: Path, *args: str, duration: str = "6s", threshold: str = "errors.rate < 1%"
    ) -> None:
        scenario = tmp_path / "live.yaml"
        scenario.write_text(ECHO.format(duration=duration, threshold=threshold))
        self.report = tmp_path / "r.json"
        env = {**os.environ, "DASH_SECRET": "dash-secret-value-4711"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runner",
                "run",
                str(scenario),
                "--report-dir",
                "",
                "--json",
                str(self.report),
                "-q",
                "--dashboard",
                "127.0.0.1:0",
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert line.startswith("wsload: live dashboard") and line.rstrip().endswith(":"), line
        self.url = self.proc.stderr.readline().strip()  # the URL alone on its line
        assert re.fullmatch(r"http://\S+", self.url), self.url
        self.base = self.url.split("?")[0]

    def wait(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=scaled(60))
        return self.proc.returncode, out, err

    def doc(self) -> dict[str, Any]:
        return json.loads(self.report.read_text())


@pytest.fixture
def page() -> Iterator[Page]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"headless Chromium not found at {CHROMIUM}: install it (tests/run.sh does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


def state(page: Page) -> dict[str, Any]:
    return page.evaluate(
        "() => ({live: document.body.dataset.live, updates: +(document.body.dataset.updates || 0),"
        " second: +(document.body.dataset.second || -1), render: document.body.dataset.render,"
        " charts: +(document.body.dataset.charts || 0), error: document.body.dataset.error || ''})"
    )


def test_the_page_follows_the_run_and_ends_as_its_report(tmp_path: Path, page: Page) -> None:
    run = Run(tmp_path)
    started = time.monotonic()
    page.goto(run.base)
    page.wait_for_selector('body[data-live="live"]', timeout=scaled(5) * 1000)
    assert time.monotonic() - started < scaled(3.0)  # the first second's report, within a second or so
    first = state(page)
    page.wait_for_function(
        f"() => +document.body.dataset.second > {first['second']}", timeout=scaled(5) * 1000
    )
    later = state(page)
    assert later["updates"] > first["updates"]
    assert later["render"] == "ok" and later["charts"] >= 2, later  # the report's own charts, drawn
    page.wait_for_selector('body[data-live="final"]', timeout=scaled(30) * 1000)
    code, _out, err = run.wait()
    assert code == 0, err
    doc = run.doc()
    # What the page ends with is the report: every step's count and every threshold as in the JSON.
    rows = page.eval_on_selector_all(
        "h2:text('Steps') + div table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    counts = {r[0]: int(r[3]) for r in rows}
    assert counts == {s["name"]: s["count"] for s in doc["steps"]}
    shown = page.eval_on_selector_all(
        "h2:text('Thresholds') + div table tbody tr", "rows => rows.map(r => r.cells[1].textContent)"
    )
    assert shown == [t["expression"] for t in doc["thresholds"]]
    assert page.get_attribute("#live-download", "href", timeout=1000).startswith("blob:")
    assert "dash-secret-value-4711" not in page.content()
    assert "name: live echo" in page.inner_text("main")  # the scenario file, as --html has it


def test_a_threshold_flips_from_passing_to_failing_on_the_page(tmp_path: Path, page: Page) -> None:
    """``iterations.count < 100`` holds for the first seconds and is lost later: the page shows
    it passing, then lost, and the run fails."""
    run = Run(tmp_path, threshold="iterations.count < 100")
    page.goto(run.base)
    row = "h2:text('Thresholds') + div table tbody tr:has-text('iterations.count')"
    page.wait_for_selector(f"{row} .pass-text", timeout=scaled(8) * 1000)
    page.wait_for_selector(f"{row} .fail-text", timeout=scaled(20) * 1000)
    assert state(page)["live"] in ("live", "final")
    code, _out, _err = run.wait()
    assert code == 1


def test_a_page_opened_late_catches_up_with_the_run_so_far(tmp_path: Path, page: Page) -> None:
    run = Run(tmp_path, duration="8s")
    time.sleep(scaled(4.5))
    page.goto(run.base)
    page.wait_for_selector('body[data-live="live"]', timeout=scaled(5) * 1000)
    first = state(page)
    assert first["updates"] == 1 and first["second"] >= 3, first
    points = page.eval_on_selector_all(
        "[id^='chart-'][data-points]", "els => els.map(e => +e.dataset.points)"
    )
    assert points and max(points) >= 3  # the seconds before the page came, charted
    assert run.wait()[0] == 0


def test_the_stop_button_stops_the_run_only_with_the_token(tmp_path: Path, page: Page) -> None:
    token = "tok-" + "x" * 20
    run = Run(tmp_path, "--dashboard-token", token, duration="60s")
    base = run.base

    def post(headers: dict[str, str]) -> int:
        request = urllib.request.Request(base + "stop", method="POST", headers=headers, data=b"")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post({}) == 403
    assert post({"Authorization": "Bearer wrong-token-value"}) == 403
    page.goto(base)  # without the token: no button
    page.wait_for_selector('body[data-live="live"]', timeout=scaled(8) * 1000)
    assert page.query_selector("#live-stop") is None
    assert run.proc.poll() is None  # still running
    page.goto(run.url)  # the printed URL holds the token
    page.wait_for_selector("#live-stop:not([disabled])", timeout=scaled(8) * 1000)
    page.click("#live-stop")
    page.wait_for_selector('body[data-stop="accepted"]', timeout=scaled(5) * 1000)
    page.wait_for_selector('body[data-live="final"]', timeout=scaled(20) * 1000)
    code, out, err = run.wait()
    assert code == 130, err
    doc = run.doc()
    assert doc["interrupted"] is True and doc["iterations"]["completed"] > 0
    assert token not in out + err + run.report.read_text()  # printed once, in the URL (read above)


def test_without_a_token_the_page_cannot_stop_the_run(tmp_path: Path) -> None:
    run = Run(tmp_path, duration="3s")
    request = urllib.request.Request(
        run.base + "stop", method="POST", headers={"Authorization": "Bearer anything"}, data=b""
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
    assert b"without --dashboard-token" in refused.value.read()
    assert run.wait()[0] == 0


def test_loopback_only_without_a_token_and_only_loopback_hosts(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("target: embedded\nsteps: [{sleep: 1ms}]\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(tmp_path / "s.yaml"),
            "--dashboard",
            "0.0.0.0:0",
            "--report-dir",
            "",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(30),
    )
    assert done.returncode == 2
    assert "needs --dashboard-token" in done.stderr and "Traceback" not in done.stderr
    run = Run(tmp_path, duration="3s")
    host, port = run.base.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/", headers={"Host": f"rebound.example:{port}"})
    assert conn.getresponse().status == 421  # a page elsewhere cannot read it through DNS rebinding
    assert run.wait()[0] == 0


def test_workers_and_rounds_on_one_dashboard(tmp_path: Path, page: Page) -> None:
    """Two workers, two rounds (``--rounds 2``): the page follows the merged run, shows the
    first round's report, then the second round live, and lists the earlier round."""
    run = Run(tmp_path, "--workers", "2", "--rounds", "2", duration="3s")
    page.goto(run.base)
    page.wait_for_selector('body[data-live="live"]', timeout=scaled(10) * 1000)
    page.wait_for_selector('body[data-live="final"]', timeout=scaled(20) * 1000)
    page.wait_for_selector('body[data-live="live"]', timeout=scaled(20) * 1000)  # round 2
    assert "earlier rounds" in page.inner_text("#live-rounds")
    page.wait_for_selector('body[data-live="final"]', timeout=scaled(20) * 1000)
    text = page.inner_text("main")
    assert "2 worker(s)" in text and "Load generator, per worker" in text  # each worker's health
    rows = page.eval_on_selector_all(
        "h3:text('Load generator, per worker') + div table tbody tr",
        "rows => rows.map(r => r.cells[0].textContent)",
    )
    assert rows == ["1", "2"]
    assert run.wait()[0] == 0


def test_held_connections_cannot_lock_the_page_out(tmp_path: Path) -> None:
    """64 connections that never finish a request fill the dashboard's share; a new one makes
    room by closing the oldest of them, so the page is still served and the run goes on."""
    import socket

    from runner.dashboard.server import MAX_CONNECTIONS

    run = Run(tmp_path, duration="6s")
    host, port = run.base.removeprefix("http://").rstrip("/").rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(MAX_CONNECTIONS)]
    for s in held:
        s.sendall(b"GET / HTTP/1.1\r\n")  # a head that never ends
    time.sleep(0.3)
    with urllib.request.urlopen(run.base, timeout=5) as page:
        assert page.status == 200 and b"wsload live" in page.read()
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    evicted = 0
    for s in held:
        s.settimeout(0.2)
        try:
            evicted += s.recv(10) == b""
        except ConnectionResetError:
            evicted += 1
        except TimeoutError:
            pass
        s.close()
    assert evicted >= 1  # the oldest half-open one made room
    assert run.wait()[0] == 0


def test_the_dashboard_never_breaks_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """A failure while building the page turns the dashboard off with one line; the run's tick
    (which also drives progress and abort_on_fail) goes on."""
    from runner.dashboard import Dashboard
    from runner.reports.masking import Masker

    dashboard = Dashboard("127.0.0.1", 0, token=None, masker=Masker())
    dashboard._wanted = True  # as when a page has just connected

    def broken() -> Any:
        raise KeyError("a bug in building the page")

    dashboard.second(broken)  # no exception
    dashboard.second(broken)
    err = capsys.readouterr().err
    assert err.count("the live dashboard stopped (KeyError") == 1 and "the run and its reports go on" in err


def test_off_loopback_the_token_guards_watching_too() -> None:
    """Bound to every address (not started here: only its rule is asked), the page and its
    stream want the token; on loopback they do not (only this machine reaches them)."""
    from runner.dashboard import Dashboard, DashboardError, parse_address
    from runner.reports.masking import Masker

    token = "t" * 20
    wide = Dashboard("0.0.0.0", 0, token=token, masker=Masker())
    assert not wide._may_watch("") and not wide._may_watch("token=wrong")
    assert wide._may_watch(f"token={token}")
    assert Dashboard("127.0.0.1", 0, token=token, masker=Masker())._may_watch("")
    assert parse_address("::1") == ("::1", 0) and parse_address("[::1]:8089") == ("::1", 8089)
    with pytest.raises(DashboardError, match="a scenario file"):
        parse_address("scenarios/smoke.yaml")


def test_token_rules_on_the_command_line(tmp_path: Path) -> None:
    """A short token is refused; ``WSLOAD_DASHBOARD_TOKEN`` alone changes nothing for a run
    without ``--dashboard``; ``--shard`` cannot be watched on its own loop."""
    (tmp_path / "s.yaml").write_text("target: embedded\nsteps: [{sleep: 1ms}]\n")

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner", "run", str(tmp_path / "s.yaml"), "--report-dir", "", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=scaled(30),
            env={**os.environ, **(env or {})},
        )

    short = run("--dashboard", "--dashboard-token", "errors")
    assert short.returncode == 2 and "at least 16 characters" in short.stderr
    assert run(env={"WSLOAD_DASHBOARD_TOKEN": "x" * 20}).returncode == 0
    sharded = run("--dashboard", "--shard", "1/2")
    assert sharded.returncode == 2 and "--cluster" in sharded.stderr


def test_a_count_still_to_reach_is_not_lost_on_the_live_page() -> None:
    """``iterations.count >= 1000`` short of 1000 in the middle of a run is "not reached yet" on
    the live page (counts only grow); the final report (and the file) say LOST."""
    from dataclasses import replace

    from runner.reports.html import report_parts, so_far
    from runner.results.result import RunResult, ThresholdResult

    result = RunResult(
        passed=False,
        interrupted=False,
        exit_code=1,
        scenario_name="s",
        scenario_file="s.yaml",
        started_at="",
        duration_s=3.0,
        target="",
        steps=(),
        thresholds=(
            ThresholdResult("iterations.count >= 1000", 40.0, False, 3, 1000.0, "40 >= 1000"),
            ThresholdResult("errors.rate < 1%", 0.5, False, 4, 0.01, "50% < 1%"),
        ),
    )
    live = report_parts(result, live=True)["body"]
    final = report_parts(result)["body"]
    assert live.count("not reached yet") == 1 and live.count(">LOST<") == 1  # the error rate is lost now
    assert "not reached yet" not in final and final.count(">LOST<") == 2
    # With only the count short of its goal the verdict so far is PASS (it was FAIL on the page
    # while the run passed); the final verdict is the result's own.
    only_count = replace(result, thresholds=result.thresholds[:1])
    assert so_far(only_count).passed and not only_count.passed
    assert ">PASS<" in report_parts(only_count, live=True)["body"]
    assert not so_far(result).passed  # a lost error rate still fails it
