"""Prometheus metrics: the textfile parsed back with prometheus_client's parser, and the body a real
HTTP server receives from ``--pushgateway``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner.cli import main
from runner.reports import prometheus

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"scenario", "step", "rc", "quantile", "threshold", "outcome", "worker", "stat"}


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, key  # no duplicate series
            out[key] = s.value
    return out


def _get(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_textfile_of_a_passing_run(tmp_path: Path) -> None:
    """``--prometheus-textfile`` after a check run: success, duration, quantiles, rc counts, timestamp."""
    path = tmp_path / "textfile" / "wsload.prom"
    before = time.time()
    assert (
        main(
            [
                "run",
                "scenarios/load.yaml",
                "--check",
                "--report-dir",
                "",
                "-q",
                "--prometheus-textfile",
                str(path),
            ]
        )
        == 0
    )
    samples = _samples(path.read_text())
    scenario = "echo under load"
    assert _get(samples, "wsload_scenario_success", scenario=scenario) == 1
    assert _get(samples, "wsload_scenario_exit_code", scenario=scenario) == 0
    assert 0 < _get(samples, "wsload_scenario_duration_seconds", scenario=scenario) < 10
    assert (
        before - 1
        <= _get(samples, "wsload_scenario_last_run_timestamp_seconds", scenario=scenario)
        <= time.time() + 1
    )
    assert _get(samples, "wsload_step_executions", scenario=scenario, step="read main") == 10
    assert _get(samples, "wsload_step_success", scenario=scenario, step="read main") == 1
    assert _get(samples, "wsload_step_return_codes", scenario=scenario, step="read main", rc="-2") == 0
    quantiles = [
        _get(samples, "wsload_step_latency_seconds", scenario=scenario, step="read main", quantile=q)
        for q, _ in prometheus.QUANTILES
    ]
    assert 0 < quantiles[0] <= quantiles[-1] < 1 and quantiles == sorted(quantiles)
    assert _get(samples, "wsload_threshold_success", scenario=scenario, threshold="read.p99 < 50ms") == 1
    assert {label for _, labels in samples for label, _ in labels} <= LABELS
    assert [p.name for p in path.parent.iterdir()] == ["wsload.prom"]  # written aside, then renamed
    assert _get(samples, "wsload_scenario_iterations", scenario=scenario, outcome="completed") == 1
    assert _get(samples, "wsload_scenario_iterations", scenario=scenario, outcome="interrupted") == 0
    assert _get(samples, "wsload_scenario_problems", scenario=scenario) == 0
    # values as the report has them (microseconds at most), without binary float noise
    # values as the report has them (at most nanoseconds), without binary float noise such as
    # 0.0012339999999999999 for 1.234 ms; the end-of-run timestamp is in whole milliseconds
    assert all(value == round(value, 9) for (name, _), value in samples.items()), samples


def test_textfile_of_a_failing_run(tmp_path: Path) -> None:
    """A read that timed out: success 0, exit code 1, the step's rc -2 counted once."""
    path = tmp_path / "wsload.prom"
    code = main(
        ["run", "tests/failing/timeout.yaml", "--report-dir", "", "-q", "--prometheus-textfile", str(path)]
    )
    assert code == 1
    samples = _samples(path.read_text())
    [scenario] = {dict(labels)["scenario"] for name, labels in samples if name == "wsload_scenario_success"}
    assert _get(samples, "wsload_scenario_success", scenario=scenario) == 0
    assert _get(samples, "wsload_scenario_exit_code", scenario=scenario) == 1
    failed = [
        dict(labels)["step"]
        for (name, labels), v in samples.items()
        if name == "wsload_step_success" and v == 0
    ]
    assert len(failed) == 1
    assert _get(samples, "wsload_step_return_codes", scenario=scenario, step=failed[0], rc="-2") == 1


class _Gateway(BaseHTTPRequestHandler):
    """Records each request (method, path, body) and answers with the configured status."""

    status = 200
    received: list[tuple[str, str, bytes]]

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append((self.command, self.path, self.rfile.read(length)))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = _record

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, type[_Gateway]]]:
    """A tiny HTTP server on 127.0.0.1, port 0, standing in for a Pushgateway."""
    handler = type("Gateway", (_Gateway,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_pushgateway_receives_the_metrics(gateway: tuple[str, type[_Gateway]]) -> None:
    """``--pushgateway URL``: one PUT to /metrics/job/wsload whose body parses into the run's metrics."""
    url, handler = gateway
    assert main(["run", "scenarios/smoke.yaml", "--report-dir", "", "-q", "--pushgateway", url]) == 0
    [(method, path, body)] = handler.received
    assert (method, path) == ("PUT", "/metrics/job/wsload")
    samples = _samples(body.decode())
    assert _get(samples, "wsload_scenario_success", scenario="echo smoke") == 1
    assert _get(samples, "wsload_step_executions", scenario="echo smoke", step="read main") == 1


def test_pushgateway_error_exits_3(
    gateway: tuple[str, type[_Gateway]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A Pushgateway answering 500 is a report that could not be written: exit 3, the URL named."""
    url, handler = gateway
    handler.status = 500
    assert main(["run", "scenarios/smoke.yaml", "--report-dir", "", "-q", "--pushgateway", url]) == 3
    assert len(handler.received) == 1
    assert f"cannot write report {url}" in capsys.readouterr().err


def test_duplicate_names_make_distinct_series() -> None:
    """Two scenarios of the same name get distinct ``scenario`` labels instead of colliding series."""
    from browser.synthetic import ramp

    a = ramp(3)
    text = prometheus.render([a, a])
    samples = _samples(text)  # asserts no duplicates
    scenarios = {dict(labels)["scenario"] for name, labels in samples if name == "wsload_scenario_success"}
    assert scenarios == {"synthetic ramp", "synthetic ramp #2"}


def test_fan_out_figures_are_exported(tmp_path: Path) -> None:
    """The chat room example: its read's response, delivery and reach figures as gauges, equal to
    the JSON report's."""
    import json

    path, report = tmp_path / "wsload.prom", tmp_path / "r.json"
    code = main(
        [
            *("run", "scenarios/chat_room.yaml", "--report-dir", "", "-q", "--json", str(report)),
            *("--prometheus-textfile", str(path)),
        ]
    )
    assert code == 0
    samples = _samples(path.read_text())
    hear = next(s for s in json.loads(report.read_text())["steps"] if s["name"] == "hear")
    labels = {"scenario": "chat room", "step": "hear"}
    assert (
        _get(samples, "wsload_step_reach_receivers", **labels, stat="min")
        == hear["reach"]["receivers_min"]
        == 30
    )
    for family, figure in (
        ("wsload_step_delivery_seconds", hear["delivery_ms"]),
        ("wsload_step_response_seconds", hear["response_ms"]),
        ("wsload_step_reach_seconds", hear["reach"]["time_ms"]),
    ):
        assert _get(samples, family, **labels, quantile="0.99") == pytest.approx(figure["p99"] / 1000), family
