"""Reports checked field by field on real runs (JSON, JUnit, console), secrets masked everywhere,
and the atomic writer."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from runner.cli import main
from runner.errors import ReportWriteError
from runner.reports.atomic import write_atomic
from runner.reports.masking import MASK, Masker

ROOT = Path(__file__).resolve().parent.parent
FAILING = ROOT / "tests" / "failing"
REPORT_SCHEMA = json.loads((ROOT / "runner" / "schemas" / "report.schema.json").read_text())
LATENCY_KEYS = {"p50", "p90", "p95", "p99", "p999", "max", "mean", "min"}


def _run(tmp_path: Path, *files: str, extra: tuple[str, ...] = ()) -> int:
    return main(
        [
            "run",
            *files,
            "--report-dir",
            "",
            "--json",
            str(tmp_path / "r.json"),
            "--junit",
            str(tmp_path / "r.xml"),
            *extra,
        ]
    )


def test_json_report_fields_of_a_passing_run(tmp_path: Path) -> None:
    """The JSON report of the rpc scenario holds every field the contract names, with real values."""
    assert _run(tmp_path, "scenarios/rpc.yaml") == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    Draft202012Validator(REPORT_SCHEMA).validate(doc)
    assert doc["passed"] is True and doc["interrupted"] is False and doc["exit_code"] == 0
    assert doc["scenario"] == {"name": "rpc request/response", "file": "scenarios/rpc.yaml"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["started_at"])
    assert 0 < doc["duration_s"] < 10
    assert doc["tls"] == {"verified": True, "ignored_errors": [], "allowed": []}
    assert [s["name"] for s in doc["steps"]] == [
        "open rpc",
        "first request",
        "first answer",
        "second request",
        "second answer",
        "close rpc",
    ]
    assert [s["kind"] for s in doc["steps"]] == ["open", "write", "read", "write", "read", "close"]
    for step in doc["steps"]:
        assert step["connection"] == "rpc" and step["line"] > 0
        assert step["count"] == 1 and step["ok"] == 1 and step["failures"] == 0
        assert step["rc"] == {} and step["errors"] == []
        assert set(step["latency_ms"]) == LATENCY_KEYS
        lat = step["latency_ms"]
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert set(doc["steps"][0]["connect_ms"]) == {"tcp", "upgrade"}
    assert set(doc["connect_ms"]) == {"tcp", "upgrade"}
    assert doc["connect_ms"]["tcp"] == doc["steps"][0]["connect_ms"]["tcp"]
    assert doc["iterations"]["completed"] == 1 and doc["failures"] == [] and doc["thresholds"] == []
    assert doc["timeseries"][0]["t"] == 0 and doc["timeseries"][0]["starts"] == 1


def test_json_report_thresholds_and_tls(tmp_path: Path) -> None:
    """Thresholds carry expression, observed value, verdict and line; TLS relaxation is reported."""
    assert _run(tmp_path, "scenarios/load.yaml") == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    by_expr = {t["expression"]: t for t in doc["thresholds"]}
    assert by_expr["errors.rate < 0.1%"]["value"] == 0 and by_expr["errors.rate < 0.1%"]["passed"]
    p99 = by_expr["read.p99 < 50ms"]
    assert p99["passed"] and 0 < p99["value"] < 0.05 and p99["line"] > 0 and p99["limit"] == 0.05
    assert _run(tmp_path, "scenarios/tls.yaml") == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["tls"] == {
        "verified": False,
        "ignored_errors": ["SelfSignedCertificate"],
        "allowed": ["SelfSignedCertificate"],
    }
    assert set(doc["steps"][0]["connect_ms"]) == {"tcp", "tls", "upgrade"}


def test_json_report_of_a_failing_run(tmp_path: Path) -> None:
    """A failed read shows rc counts, grouped errors and the failure's expected/actual/line."""
    assert _run(tmp_path, str(FAILING / "timeout.yaml")) == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    read = doc["steps"][2]
    assert read["rc"] == {"-2": 1} and read["count"] == 1 and read["ok"] == 0 and read["failures"] == 1
    assert read["latency_ms"] is None
    assert read["errors"] == [
        {
            "rc": -2,
            "message": "read returned rc -2, expected rc 0: time-out: no message within 0.2s",
            "count": 1,
        }
    ]
    assert doc["steps"][3]["skipped"] == 1 and doc["steps"][3]["count"] == 0
    failure = doc["failures"][0]
    assert failure["step"] == "read slow" and failure["line"] == 13 and failure["expected"] == "rc 0"
    assert failure["actual"] == "time-out: no message within 0.2s" and failure["count"] == 1


def test_junit_one_testcase_per_scenario(tmp_path: Path) -> None:
    """JUnit: a testsuite with one testcase per scenario; the failing one names its step and line."""
    assert _run(tmp_path, "scenarios/smoke.yaml", str(FAILING / "wrong_text.yaml")) == 1
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("errors") == "0"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["echo smoke", "wrong expected text"]
    assert [c.get("classname") for c in cases] == ["wsload.smoke", "wsload.wrong_text"]
    assert cases[0].get("file") == "scenarios/smoke.yaml" and float(cases[0].get("time", "-1")) >= 0
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "step 'read main' (line 13): expected text 'goodbye', got 'hello'"
    assert (
        failure.text is not None
        and "wrong_text.yaml:13 step 'read main' (read): 1 of 1 failed" in failure.text
    )
    out = cases[1].find("system-out")
    assert out is not None and out.text is not None and "FAIL wrong expected text" in out.text
    # --json with several scenarios writes one file per scenario
    assert sorted(p.name for p in tmp_path.glob("r-*.json")) == ["r-smoke.json", "r-wrong_text.json"]


def test_console_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The console shows a header, a row per step with count/ok/rc/p50/p99, errors with file:line."""
    _run(tmp_path, str(FAILING / "server_closes.yaml"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("server that closes (") and "against embedded (ws://127.0.0.1:" in lines[0]
    assert lines[1].split() == [
        "step",
        "kind",
        "line",
        "count",
        "ok",
        "fail",
        "skip",
        "pend",
        "rc",
        "p50",
        "ms",
        "p99",
        "ms",
        "max",
        "ms",
    ]
    read = next(line for line in lines if line.strip().startswith("read main"))
    assert read.split()[2:10] == ["read", "13", "1", "0", "1", "0", "0", "1:1"]
    assert any(re.search(r"server_closes\.yaml:13 read main: 1 x rc 1: .*code 4000", line) for line in lines)
    assert "  read main: peer closed: 1 x 4000 bye" in lines  # the close code and reason, always
    assert lines[-1].startswith("FAIL server that closes") and "1 failed, 2 skipped" in lines[-1]


def test_secrets_masked_in_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ${ENV} token and a Cookie value echoed back by the server never appear in any report."""
    token = "tok-3f9a8c77e1d24b"
    monkeypatch.setenv("WSLOAD_TEST_TOKEN", token)
    scenario = tmp_path / "secret.yaml"
    scenario.write_text(
        "name: secret\ntarget: embedded\nconnections:\n  main:\n    url: /headers\n    timeout: 5s\n"
        "    headers: {Authorization: 'Bearer ${WSLOAD_TEST_TOKEN}', Cookie: 'sid=c00kie-value-42'}\n"
        "  echo: {url: /echo, timeout: 5s}\n"
        "steps:\n  - open: main\n  - write: {connection: main, text: hi}\n"
        "  - read: main\n    expect: {contains: 'c00kie'}\n"
        "  - open: echo\n  - write: {connection: echo, text: 'token=${WSLOAD_TEST_TOKEN}'}\n"
        "  - read: echo\n    expect: {text: 'nothing like this'}\n"
    )
    assert _run(tmp_path, str(scenario), extra=("--verbose",)) == 1
    captured = capsys.readouterr()
    outputs = {
        "console": captured.out + captured.err,
        "json": (tmp_path / "r.json").read_text(),
        "junit": (tmp_path / "r.xml").read_text(),
    }
    for name, text in outputs.items():
        assert token not in text and "c00kie-value-42" not in text, name
        assert token[:8] not in text, name
    doc = json.loads(outputs["json"])
    assert doc["failures"][0]["actual"] == f"token={MASK}"


def test_masker_keeps_json_valid() -> None:
    """Only strings are masked inside a JSON tree; numbers and structure stay as they were."""
    masker = Masker(["12345", "s3cret-value"])
    tree = {"n": 12345, "s": "x s3cret-value y", "k": ["12345"], "s3cret-value": 1}
    assert masker.tree(tree) == {"n": 12345, "s": "x *** y", "k": ["***"], "***": 1}
    assert Masker(["ab"]).text("abc") == "abc"  # too short to mask as a substring


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    """write_atomic creates directories, replaces an old report whole and leaves no temp file."""
    path = tmp_path / "deep" / "r.json"
    write_atomic(path, "old")
    write_atomic(path, "new content")
    assert path.read_text() == "new content"
    assert os.listdir(path.parent) == ["r.json"]


def test_atomic_write_failure_leaves_nothing(tmp_path: Path) -> None:
    """A write that fails raises ReportWriteError and leaves neither the file nor a temp file."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportWriteError, match="cannot write report"):
        write_atomic(tmp_path / "file" / "r.json", "data")
    assert os.listdir(tmp_path) == ["file"]


def test_real_report_reads_back(tmp_path: Path) -> None:
    """A written JSON report reads back into a RunResult that writes the same document."""
    from runner.results.codec import decode, encode

    assert _run(tmp_path, str(FAILING / "no_match.yaml")) == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    assert encode(decode(doc)) == doc


def test_private_key_masked_in_every_form() -> None:
    """A PEM private key is masked whole, JSON-escaped, and line by line."""
    body = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    masker = Masker([pem])
    assert masker.text(f"key: {pem}") == f"key: {MASK}"
    assert "MIGHAgEAMBMG" not in masker.text(json.dumps({"k": pem}))
    assert "MIGHAgEAMBMG" not in masker.text("line MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg seen")


def test_junit_survives_control_characters() -> None:
    """Control characters from a received message never make the JUnit XML unparsable."""
    from runner.reports import junit
    from runner.results.result import FailureRecord, RunResult

    result = RunResult(
        passed=False,
        interrupted=False,
        exit_code=1,
        scenario_name="ctl\x01",
        scenario_file="f.yaml",
        started_at="2026-01-01T00:00:00.000Z",
        duration_s=0.1,
        target="",
        steps=(),
        failures=(FailureRecord("read main", 3, "expected text 'a', got '\x00\x1b'", "a", "\x00\x1b"),),
        error="",
    )
    root = ET.fromstring(junit.render([result]))
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == "ctl?"
    failure = case.find("failure")
    assert failure is not None and failure.text is not None and "f.yaml:3 read main" in failure.text
