"""The pytest plugin, through pytest itself (pytester): scenario files collected, run against the
embedded server, and reported as a CI log and ``--junitxml`` need them.

Every run passes ``-p runner.pytest_plugin``, so the tests hold whether or not the ``pytest11``
entry point is installed (CI installs the project, and the plugin then loads itself as well: the
module blocks its second name, see the last test).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from runner.server import EmbeddedServer

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "runner.pytest_plugin")

SMOKE = """\
name: echo smoke
tags: [smoke, echo]
target: embedded
connections:
  main:
    url: /echo
    timeout: 5s
steps:
  - open: main
  - write:
      connection: main
      text: hello
  - read:
      connection: main
      timeout: 2s
    expect:
      text: hello
  - close: main
"""

# The read step starts on line 13; its expectation is on line 17.
WRONG_TEXT = """\
name: wrong expected text
tags: [nightly]
target: embedded
connections:
  main:
    url: /echo
    timeout: 5s
steps:
  - open: main
  - write:
      connection: main
      text: hello
  - read:
      connection: main
      timeout: 2s
    expect:
      text: goodbye
  - close: main
"""

# Line 10 holds the misspelled step kind, at column 5.
BROKEN = """\
name: misspelled step
target: embedded
connections:
  main:
    url: /echo
    timeout: 5s

steps:
  - open: main
  - raed: main
"""

# No target of its own: the relative URL needs --wsload-target (or the env / ini fallbacks).
RELATIVE = """\
name: relative url
connections:
  main:
    url: /echo
    timeout: 5s
steps:
  - open: main
  - close: main
"""

GREETING = """\
name: greeting variable
target: embedded
variables:
  greeting: from the file
connections:
  main:
    url: /echo
    timeout: 5s
steps:
  - open: main
  - write:
      connection: main
      text: "{{ greeting }}"
  - read:
      connection: main
      timeout: 2s
    expect:
      text: from the command line
  - close: main
"""

LOAD_LOST_THRESHOLD = """\
name: small load gate
target: embedded
connections:
  main:
    url: /slow?delay=0.05
    timeout: 5s
steps:
  - open: main
  - write:
      connection: main
      text: hi
  - read: main
  - close: main
load:
  vus: 2
  iterations: 1
thresholds:
  - errors.rate < 1%
  - read main.p99 < 1ms
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in-process with this tree's plugin loaded exactly once."""
    return pytester.runpytest_inprocess(*PLUGIN, *args)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    """An embedded server for scenarios that take their target from outside."""
    server = EmbeddedServer(host="127.0.0.1", port=0).run_in_thread()
    try:
        yield server.url
    finally:
        server.stop_thread()


def test_collects_ws_yaml_file_as_one_item_named_after_the_scenario(pytester: pytest.Pytester) -> None:
    """A *.ws.yaml file is one test item whose id is the scenario's name; other YAML is left alone."""
    pytester.makefile(".ws.yaml", smoke=SMOKE)
    pytester.makefile(".yaml", plain=SMOKE)
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["smoke.ws.yaml::echo smoke"])
    assert "plain.yaml" not in result.stdout.str()
    result.stdout.fnmatch_lines(["1 test collected*"])


def test_wsload_files_ini_collects_matching_files(pytester: pytest.Pytester) -> None:
    """Files matching a glob of the ``wsload_files`` ini option are collected too."""
    pytester.makeini("[pytest]\nwsload_files = ws/*.yaml\n")
    (pytester.path / "ws").mkdir()
    (pytester.path / "ws" / "gate.yaml").write_text(SMOKE)
    (pytester.path / "other.yaml").write_text(SMOKE)
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["ws/gate.yaml::echo smoke", "1 test collected*"])


def test_passing_scenario_passes(pytester: pytest.Pytester) -> None:
    """A scenario that meets every expectation against the embedded server is a passed test."""
    pytester.makefile(".ws.yaml", smoke=SMOKE)
    result = run(pytester, "-rP")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*PASS echo smoke (smoke.ws.yaml)*"])


def test_failing_scenario_shows_step_yaml_lines_expected_and_actual(pytester: pytest.Pytester) -> None:
    """A failure names the step and its file:line, shows its YAML lines, expected, actual and the report."""
    pytester.makefile(".ws.yaml", wrong=WRONG_TEXT)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*wsload scenario: wrong expected text*",
            "wrong.ws.yaml:13: step 'read main' failed: expected text 'goodbye', got 'hello'",
            "  13 |   - read:",
            "  14 |       connection: main",
            "  17 |       text: goodbye",
            "  expected: goodbye",
            "  actual:   hello",
            "*FAIL wrong expected text (wrong.ws.yaml)*",
            "FAILED wrong.ws.yaml::wrong expected text*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_schema_error_shows_validate_form(pytester: pytest.Pytester) -> None:
    """An invalid file fails with wsload validate's FILE:LINE:COL: path: message and excerpt, no traceback."""
    pytester.makefile(".ws.yaml", broken=BROKEN)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "broken.ws.yaml:10:5: steps[1].raed: unknown step kind 'raed', did you mean 'read'?",
            "  10 |   - raed: main",
            "     |     ^",
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "runner/loader/" not in out  # no frame of the loader package: the error is the whole story


def test_tags_select_by_marker_under_strict_markers(pytester: pytest.Pytester) -> None:
    """``-m smoke`` runs the scenario tagged smoke only, and --strict-markers accepts the tags."""
    pytester.makefile(".ws.yaml", smoke=SMOKE, wrong=WRONG_TEXT)
    result = run(pytester, "--strict-markers", "-m", "smoke")
    result.assert_outcomes(passed=1, deselected=1)


def test_k_selects_by_scenario_name(pytester: pytest.Pytester) -> None:
    """``-k`` matches a word found only in the scenario's name (not in its file name or tags)."""
    pytester.makefile(".ws.yaml", a=SMOKE, b=WRONG_TEXT)
    result = run(pytester, "-k", "expected", "-v")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["b.ws.yaml::wrong expected text FAILED*"])


def test_wsload_var_overrides_the_files_variable(pytester: pytest.Pytester) -> None:
    """``--wsload-var NAME=VALUE`` reaches the scenario's templates (the file's own value fails)."""
    pytester.makefile(".ws.yaml", greeting=GREETING)
    run(pytester).assert_outcomes(failed=1)
    run(pytester, "--wsload-var", "greeting=from the command line").assert_outcomes(passed=1)


def test_bad_wsload_var_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A ``--wsload-var`` without ``=`` stops pytest with a usage error naming the option."""
    pytester.makefile(".ws.yaml", smoke=SMOKE)
    result = run(pytester, "--wsload-var", "novalue")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--wsload-var 'novalue'*"])


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("ws://[zz]:80", "not a valid URL: the host is not valid: 'zz' does not appear to be an IPv4*"),
        ("ws://127.0.0.1:99999", "not a valid URL: port '99999' is not a number from 1 to 65535"),
    ],
)
def test_bad_wsload_target_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, target: str, message: str
) -> None:
    """A malformed ``--wsload-target`` stops pytest with a usage error naming the option (it was a
    traceback, or a problem pinned on each scenario file's line 1)."""
    monkeypatch.delenv("WSLOAD_TARGET", raising=False)
    pytester.makefile(".ws.yaml", relative=RELATIVE)
    result = run(pytester, "--wsload-target", target)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*command line: --wsload-target: {message}*"])
    assert "relative.ws.yaml" not in result.stdout.str() + result.stderr.str()


def test_wsload_target_option_sets_the_base_url(pytester: pytest.Pytester, echo_server: str) -> None:
    """``--wsload-target`` gives a scenario without a target the server its relative URLs go to."""
    pytester.makefile(".ws.yaml", relative=RELATIVE)
    run(pytester, "--wsload-target", echo_server).assert_outcomes(passed=1)


def test_target_comes_from_env_before_ini(
    pytester: pytest.Pytester, echo_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WSLOAD_TARGET wins over the ``wsload_target`` ini value, which is used when the env is unset."""
    pytester.makeini("[pytest]\nwsload_target = ws://127.0.0.1:9\n")
    pytester.makefile(".ws.yaml", relative=RELATIVE)
    monkeypatch.setenv("WSLOAD_TARGET", echo_server)
    run(pytester).assert_outcomes(passed=1)
    monkeypatch.delenv("WSLOAD_TARGET")
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*127.0.0.1:9*"])


def test_junitxml_holds_the_testcase_and_the_json_report(pytester: pytest.Pytester) -> None:
    """``--junitxml`` has a testcase per scenario carrying the JSON report as a property."""
    pytester.makefile(".ws.yaml", smoke=SMOKE, wrong=WRONG_TEXT)
    run(pytester, "--junitxml=out.xml")
    root = ET.parse(pytester.path / "out.xml").getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"echo smoke", "wrong expected text"}
    assert cases["wrong expected text"].find("failure") is not None
    props = {p.get("name"): p.get("value") for p in cases["echo smoke"].iter("property")}
    report = json.loads(props["wsload_report"] or "")
    assert report["passed"] is True
    assert report["scenario"]["name"] == "echo smoke"


def test_report_dir_gets_one_json_report_per_test(pytester: pytest.Pytester) -> None:
    """``--wsload-report-dir`` writes each scenario's JSON report as a file."""
    pytester.makefile(".ws.yaml", wrong=WRONG_TEXT)
    run(pytester, "--wsload-report-dir", "out").assert_outcomes(failed=1)
    files = list((pytester.path / "out").glob("*.json"))
    assert len(files) == 1
    report = json.loads(files[0].read_text())
    assert report["passed"] is False
    assert report["failures"][0]["expected"] == "goodbye"


def test_exitfirst_stops_after_the_first_failing_scenario(pytester: pytest.Pytester) -> None:
    """``-x`` stops the session at the first scenario that fails."""
    pytester.makefile(".ws.yaml", a=WRONG_TEXT, b=WRONG_TEXT.replace("wrong expected", "second wrong"))
    run(pytester, "-x").assert_outcomes(failed=1)


def test_load_file_runs_as_a_load_and_its_lost_threshold_fails(pytester: pytest.Pytester) -> None:
    """A file with a load section runs every virtual user; a lost threshold fails, naming its line."""
    pytester.makefile(".ws.yaml", gate=LOAD_LOST_THRESHOLD)
    result = run(pytester, "--junitxml=out.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "gate.ws.yaml:19: threshold lost: read main.p99 < 1ms*",
            "load: closed model, 1 worker(s), max 2 VUs*",
        ]
    )
    root = ET.parse(pytester.path / "out.xml").getroot()
    report = json.loads({p.get("name"): p.get("value") for p in root.iter("property")}["wsload_report"] or "")
    assert report["scenario"]["file"] == "gate.ws.yaml"
    assert report["steps"][0]["count"] == 2  # "open main", once per virtual user
    assert [t["passed"] for t in report["thresholds"] if not t["default"]] == [True, False]


def test_scenarios_leave_an_asyncio_suites_event_loop_alone(pytester: pytest.Pytester) -> None:
    """A scenario runs on a loop of its own: the suite's current event loop stays set and usable."""
    pytester.makefile(".ws.yaml", a=SMOKE)
    pytester.makepyfile(
        test_z="""
        import asyncio

        LOOP = asyncio.new_event_loop()
        asyncio.set_event_loop(LOOP)

        def test_loop_still_current():
            assert asyncio.get_event_loop() is LOOP
            assert LOOP.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
        """
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["a.ws.yaml::echo smoke PASSED*", "test_z.py::test_loop_still_current PASSED*"]
    )


def test_server_fixtures_serve_echo_over_ws_and_wss(pytester: pytest.Pytester) -> None:
    """``wsload_server`` and ``wsload_tls_server`` give running embedded servers to Python tests."""
    pytester.makepyfile(
        test_fixtures="""
        import ssl
        from websockets.sync.client import connect

        def test_plain(wsload_server):
            with connect(wsload_server + "/echo") as ws:
                ws.send("ping")
                assert ws.recv(timeout=5) == "ping"

        def test_tls(wsload_tls_server):
            assert wsload_tls_server.url.startswith("wss://")
            context = ssl.create_default_context(cafile=str(wsload_tls_server.ca_file))
            context.check_hostname = False
            with connect(wsload_tls_server.url + "/echo", ssl=context) as ws:
                ws.send("ping")
                assert ws.recv(timeout=5) == "ping"
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_entry_point_and_explicit_loading_together_register_the_module_once(
    pytester: pytest.Pytester,
) -> None:
    """With the pytest11 entry point installed, ``-p`` or ``pytest_plugins`` naming the module is harmless."""
    dist = pytester.path / "site" / "wsload_fake-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wsload-fake\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\nwsload = runner.pytest_plugin\n")
    pytester.syspathinsert(pytester.path / "site")
    pytester.makefile(".ws.yaml", smoke=SMOKE)
    pytester.runpytest_inprocess("--collect-only", "-q").stdout.fnmatch_lines(["smoke.ws.yaml::echo smoke"])
    run(pytester).assert_outcomes(passed=1)
    pytester.makeconftest('pytest_plugins = ["runner.pytest_plugin"]')
    pytester.runpytest_inprocess().assert_outcomes(passed=1)
