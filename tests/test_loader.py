"""The loader: YAML positions, model building, names, secrets, env, files, and every problem at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runner.errors import ScenarioError, UsageError
from runner.loader import is_sensitive_header, load_scenario, load_scenario_text
from runner.scenario import model as m
from runner.scenario.source import format_path, parse_yaml
from runner.steps.read import ReadStep
from runner.steps.repeat import RepeatStep
from runner.steps.sleep import SleepStep
from runner.steps.write import BinaryPayload, TextPayload, WriteStep

BASE = """\
target: embedded
connections:
  main:
    url: /echo
"""


def load(text: str, **kw: object) -> m.Scenario:
    return load_scenario_text(textwrap.dedent(text), file="t.yaml", **kw)  # type: ignore[arg-type]


def problems(text: str, **kw: object) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load(text, **kw)
    return [str(p) for p in info.value.problems]


def test_positions_keyed_by_path() -> None:
    """Every value and key has a 1-based line and column in the side table."""
    data, source = parse_yaml("a: 1\nsteps:\n  - open: main\n    expect: {rc: -2}\n", "f.yaml")
    assert data == {"a": 1, "steps": [{"open": "main", "expect": {"rc": -2}}]}
    assert source.values[("steps", 0, "expect", "rc")] == (4, 18)
    assert source.keys[("steps", 0, "expect")] == (4, 5)
    assert format_path(("steps", 0, "expect", "rc")) == "steps[0].expect.rc"


def test_deep_nesting_is_a_problem_not_recursion_error() -> None:
    """Ten thousand nested lists give a Problem, never a RecursionError."""
    with pytest.raises(ScenarioError, match="nesting deeper"):
        load_scenario_text("[" * 10000, file="deep.yaml")


def test_merge_keys_supported() -> None:
    """YAML merge keys (<<: *anchor) work for sharing connection options."""
    s = load(
        """\
        target: embedded
        connections:
          a: &base {url: /echo, timeout: 3s}
          b: {<<: *base, url: /rpc}
        steps: [{open: a}, {open: b}]
        """
    )
    assert s.connections["b"].timeout_s == 3.0 and s.connections["b"].url.source == "/rpc"


def test_model_from_full_scenario() -> None:
    """A scenario with every step kind builds the frozen model with converted units."""
    s = load(
        BASE
        + """\
    timeout: 2s
    ignoreSslErrors: [HostNameMismatch]
    subprotocols: [chat]
    maxMessageSize: 64KiB
defaults: {read_timeout: 3s, run_timeout: 1m}
variables: {n: 3}
steps:
  - open: main
  - write: {connection: main, json: {id: "{{ iteration }}", n: "{{ n }}"}}
  - read:
      connection: main
      timeout: 500ms
      match: {json: {id: "{{ iteration }}"}}
    expect: {latency: "< 50ms", that: ["n >= 3", "name == 'x'"], length: 1KiB}
    capture: {got: n, word: {regex: "(?P<w>[a-z]+)", group: w}}
  - write: {connection: main, text: "{{ got }} {{ word }}"}
  - write: {connection: main, binary: {hex: "00 ff"}}
  - write: {connection: main, binary: {size: 1KiB}}
  - ping: main
  - sleep: 250ms
  - repeat: {times: 2, steps: [{read: main}]}
  - close: {connection: main, timeout: 1s}
"""
    )
    conn = s.connections["main"]
    assert conn.timeout_s == 2.0 and conn.ignore_ssl_errors == frozenset({"HostNameMismatch"})
    assert conn.subprotocols == ("chat",) and conn.max_message_size == 65536
    assert s.read_timeout_s == 3.0 and s.run_timeout_s == 60.0 and s.target == "embedded"
    kinds = [type(step).__name__ for step in s.steps]
    assert kinds == [
        "OpenStep",
        "WriteStep",
        "ReadStep",
        "WriteStep",
        "WriteStep",
        "WriteStep",
        "PingStep",
        "SleepStep",
        "RepeatStep",
        "CloseStep",
    ]
    read = s.steps[2]
    assert isinstance(read, ReadStep) and read.timeout_s == 0.5
    assert read.expect.latency_lt_s == pytest.approx(0.05)
    assert read.expect.content is not None and read.expect.content.that == (
        ("n >= 3", "n >= `3`"),
        ("name == 'x'", "name == 'x'"),
    )
    assert read.expect.content.length == 1024 and read.match is not None and read.match.needs_json
    assert read.captures == (m.Capture("got", path="n"), m.Capture("word", regex="(?P<w>[a-z]+)", group=1))
    assert read.location == m.Location("t.yaml", 14, 5)
    bin_hex, bin_size = s.steps[4], s.steps[5]
    assert isinstance(bin_hex, WriteStep) and bin_hex.payload == BinaryPayload(b"\x00\xff")
    assert isinstance(bin_size, WriteStep) and isinstance(bin_size.payload, BinaryPayload)
    assert len(bin_size.payload.data) == 1024
    sleep = s.steps[7]
    assert isinstance(sleep, SleepStep) and sleep.duration_s == 0.25


def test_default_step_names_unique() -> None:
    """Default names are '<kind> <connection>', numbered from the second, avoiding explicit names."""
    s = load(
        BASE
        + """\
steps:
  - open: main
  - read: main
  - read: main
  - name: "read main #3"
    read: main
  - read: main
  - repeat: {times: 2, steps: [{sleep: 1s}, {sleep: 1s}]}
"""
    )
    names = [step.name for step in s.steps]
    assert names == ["open main", "read main", "read main #2", "read main #3", "read main #4", "repeat"]
    inner = s.steps[-1]
    assert isinstance(inner, RepeatStep) and [x.name for x in inner.steps] == ["sleep", "sleep #2"]


def test_connection_may_be_omitted_with_one_connection() -> None:
    """With exactly one declared connection, steps may leave 'connection' out."""
    s = load(BASE + "steps:\n  - open: {}\n  - write: {text: hi}\n  - read: {timeout: 1s}\n")
    assert [getattr(x, "connection", None) for x in s.steps] == ["main", "main", "main"]


def test_expect_on_purpose_allows_read_after_close() -> None:
    """A read after close that expects an error is a deliberate test, not a mistake."""
    s = load(BASE + "steps:\n  - open: main\n  - close: main\n  - read: main\n    expect: {rc: -1}\n")
    assert s.steps[2].expect.rc == -1


def test_thresholds_parsed_to_base_units() -> None:
    """Threshold values convert to seconds, fractions and per-second rates."""
    s = load(
        BASE
        + """\
steps: [{open: main}, {read: main}]
thresholds:
  - read.p99 < 50ms
  - "read main.p95 <= 20ms"
  - errors.rate < 0.1%
  - iterations.per_s >= 100/s
  - {threshold: checks.rate > 99%, abort_on_fail: true}
  - open main.count == 1
  - errors.rate < 0.001
  - {threshold: read.failure_rate <= 0.5%, no_data: pass}
  - read main.per_s > 20
"""
    )
    got = [(t.subject, t.stat, t.op, t.value, t.abort_on_fail, t.accept_no_data) for t in s.thresholds]
    assert got == [
        ("read", "p99", "<", pytest.approx(0.05), False, False),
        ("read main", "p95", "<=", pytest.approx(0.02), False, False),
        ("errors", "rate", "<", pytest.approx(0.001), False, False),
        ("iterations", "per_s", ">=", 100.0, False, False),
        ("checks", "rate", ">", pytest.approx(0.99), True, False),
        ("open main", "count", "==", 1.0, False, False),
        ("errors", "rate", "<", pytest.approx(0.001), False, False),
        ("read", "failure_rate", "<=", pytest.approx(0.005), False, True),
        ("read main", "per_s", ">", 20.0, False, False),
    ]
    assert s.thresholds[0].location.line == 7


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        (
            "iterations.rate >= 100/s",
            "'iterations.rate' is not a threshold name any more ('.rate' meant per second here but a "
            "fraction for errors): use 'iterations.per_s' (iterations ended per second) or "
            "'iterations.failure_rate' (the failed fraction)",
        ),
        ("read.rate > 10", "use 'read.per_s' (executions ended per second) or 'read.failure_rate'"),
        ("errors.rate < 5", "'5' is more than 1 (a fraction: 1 is 100%); did you mean 5%?"),
        ("read.p99x < 5ms", "'read' has no figure 'p99x', did you mean 'read.p99'?"),
        ("iteratons.count > 1", "names no step or metric 'iteratons', did you mean 'iterations'?"),
        ("errors.rate < fast", "threshold value: 'fast' is not a fraction"),
    ],
)
def test_threshold_names_with_one_meaning(threshold: str, message: str) -> None:
    """Old ambiguous names are refused with what to write instead; typos get a did-you-mean."""
    with pytest.raises(ScenarioError) as err:
        load(BASE + f"steps: [{{open: main}}, {{read: main}}]\nthresholds:\n  - {threshold}\n")
    assert message in str(err.value)


def test_load_models() -> None:
    """'vus' gives the closed model, 'rate' or rate stages the open model, units converted."""
    closed = load(
        BASE + "steps: [{open: main}]\nload: {vus: 10, duration: 1m, ramp_up: 10s, think_time: 100ms}\n"
    )
    assert closed.load == m.LoadSpec(
        model="closed", vus=10, duration_s=60.0, ramp_up_s=10.0, think_time_s=0.1
    )
    opened = load(BASE + "steps: [{open: main}]\nload: {rate: 50/s, duration: 10s, max_vus: 100}\n")
    assert opened.load is not None and opened.load.model == "open" and opened.load.rate == 50.0
    staged = load(
        BASE
        + "steps: [{open: main}]\nload:\n  stages: [{duration: 5s, rate: 10/s}, {duration: 5s, rate: 0}]\n"
    )
    assert staged.load is not None and staged.load.model == "open"
    assert staged.load.stages == (m.Stage(5.0, 10.0), m.Stage(5.0, 0.0))


def test_env_substitution_and_secrets() -> None:
    """${ENV} is replaced at load and its value, sensitive headers and keys become secrets."""
    s = load(
        """\
        target: embedded
        connections:
          main:
            url: /echo
            headers:
              Authorization: "Bearer ${TOKEN}"
              X-Trace: "${TRACE}"
              Cookie: sid=hunter22
              X-Plain: visible
        steps: [{open: main}]
        """,
        environ={"TOKEN": "s3cr3t-token", "TRACE": "abc", "HOME": "/x"},
    )
    headers = dict(s.connections["main"].headers)
    assert isinstance(headers["Authorization"], m.Secret)
    assert headers["Authorization"].reveal() == "Bearer s3cr3t-token"
    assert isinstance(headers["Cookie"], m.Secret) and not isinstance(headers["X-Plain"], m.Secret)
    assert {"s3cr3t-token", "abc", "sid=hunter22", "Bearer s3cr3t-token"} <= s.secrets
    assert "hunter22" not in s.source and "Cookie: ***" in s.source and "X-Plain: visible" in s.source
    assert "s3cr3t-token" not in repr(s.connections["main"])


def test_dollar_dollar_escapes_env() -> None:
    """$${NAME} stays a literal ${NAME}."""
    s = load(BASE + 'steps: [{open: main}, {write: {text: "$${HOME}"}}]\n', environ={})
    payload = s.steps[1].payload  # type: ignore[union-attr]
    assert isinstance(payload, TextPayload) and payload.template.source == "${HOME}"


def test_sensitive_header_names() -> None:
    """Credentials headers are recognised by name and by words in the name."""
    for name in ("Authorization", "cookie", "Proxy-Authorization", "X-Api-Key", "X-Auth-Token", "My-Secret"):
        assert is_sensitive_header(name)
    assert not is_sensitive_header("User-Agent")


def test_files_relative_to_scenario(tmp_path: Path) -> None:
    """PEM, binary and JSON Schema files resolve next to the scenario; the key is a Secret."""
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN PRIVATE KEY-----\nMIIBkey\n-----END PRIVATE KEY-----\n"
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "client.pem").write_text(pem)
    (tmp_path / "certs" / "client.key").write_text(key)
    (tmp_path / "blob.bin").write_bytes(b"\x01\x02")
    (tmp_path / "answer.json").write_text('{"type": "object"}')
    file = tmp_path / "s.yaml"
    file.write_text(
        textwrap.dedent(
            """\
            target: embedded-tls
            connections:
              main:
                url: /echo
                sslConfig:
                  localCertificate: {file: certs/client.pem}
                  privateKey: {key: {file: certs/client.key}, algorithm: EC}
                caCertificates: {file: certs/client.pem}
            steps:
              - open: main
              - write: {binary: {file: blob.bin}}
              - read: main
                expect: {json_schema: {file: answer.json}}
            """
        )
    )
    s = load_scenario(file)
    cfg = s.connections["main"].ssl_config
    assert (
        cfg is not None
        and cfg.certificate_pem == pem
        and cfg.key_pem.reveal() == key
        and cfg.algorithm == "EC"
    )
    assert s.connections["main"].ca_certificates == pem and key in s.secrets
    assert s.steps[1].payload == BinaryPayload(b"\x01\x02")  # type: ignore[union-attr]
    assert s.steps[2].expect.content.json_schema == {"type": "object"}  # type: ignore[union-attr]
    assert "MIIBkey" not in s.source


def test_target_override_allows_relative_urls() -> None:
    """--target supplies the base for relative urls and replaces the file's target."""
    text = "connections: {main: {url: /echo}}\nsteps: [{open: main}]\n"
    assert "needs a target" in problems(text)[0]
    assert load(text, target="ws://127.0.0.1:9").target == "ws://127.0.0.1:9"
    with pytest.raises(UsageError, match=r"^command line: --target: .*use ws:// or wss://"):
        load(text, target="http://127.0.0.1:9")  # the command line's mistake, not the file's


def test_cli_variables_known_and_override() -> None:
    """--var names count as known variables and override the file's values."""
    text = BASE + "variables: {a: 1}\nsteps: [{open: main}, {write: {text: '{{ a }}{{ b }}'}}]\n"
    assert "unknown variable 'b'" in " ".join(problems(text))
    s = load(text, variables={"a": "x", "b": "y"})
    assert dict(s.variables) == {"a": "x", "b": "y"}


def test_all_problems_reported_sorted() -> None:
    """Several mistakes are reported together, sorted by line."""
    found = problems(
        BASE
        + """\
steps:
  - open: mian
  - write: {connection: main, text: "{{ nope }}"}
  - sleep: 10d
thresholds: [nothing.p99 < 1s]
"""
    )
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == sorted(lines) and len(found) == 5, found


def test_excerpt_has_caret() -> None:
    """Each problem carries the offending line and a caret under the column."""
    with pytest.raises(ScenarioError) as info:
        load(BASE + "steps:\n  - sleep: soon\n")
    problem = info.value.problems[0]
    assert (problem.line, problem.column) == (6, 12)
    assert problem.excerpt.splitlines()[-2].endswith("- sleep: soon")
    assert problem.excerpt.splitlines()[-1].index("^") == problem.excerpt.splitlines()[-2].index("soon")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing scenario file or a directory is a Problem, not an OSError."""
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)


def test_ignore_ssl_errors_forms() -> None:
    """true, "" and [] ignore every error; a list ignores only its keywords; false is refused."""

    def ignore(value: str) -> object:
        conn = f"{{main: {{url: /echo, ignoreSslErrors: {value}}}}}"
        s = load(f"target: embedded-tls\nconnections: {conn}\nsteps: [{{open: main}}]\n")
        return s.connections["main"].ignore_ssl_errors

    assert (
        ignore("true") is m.ALL_SSL_ERRORS
        and ignore('""') is m.ALL_SSL_ERRORS
        and ignore("[]") is m.ALL_SSL_ERRORS
    )
    with pytest.raises(ScenarioError, match="false would ignore every certificate error"):
        ignore("false")
    assert ignore("[SelfSignedCertificate]") == frozenset({"SelfSignedCertificate"})


def test_step_timeout_sibling_of_short_form() -> None:
    """'timeout' beside a short form sets the step's time-out; given twice, it is a problem."""
    s = load(BASE + "steps:\n  - open: main\n    timeout: 2s\n  - read: main\n    timeout: 250ms\n")
    assert [getattr(x, "timeout_s", None) for x in s.steps] == [2.0, 0.25]
    found = problems(BASE + "steps:\n  - open: main\n  - read: {timeout: 1s}\n    timeout: 2s\n")
    assert found and "timeout given twice" in found[0] and ":8:5:" in found[0]


def test_unknown_key_lists_what_the_step_takes() -> None:
    """An unknown key on a step without a near name lists the keys that step kind accepts."""
    found = problems(BASE + "steps:\n  - open: main\n  - write: {text: a}\n    capture: {x: y}\n")
    assert "unknown key 'capture' (a write step takes: write, name, expect)" in found[0]


def test_bom_and_binary_garbage(tmp_path: Path) -> None:
    """A UTF-8 BOM is accepted; bytes that are not UTF-8 are a Problem, not a UnicodeDecodeError."""
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + (BASE + "steps: [{open: main}]\n").encode())
    assert load_scenario(bom).steps[0].name == "open main"
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(junk)


def test_schema_and_semantic_problems_are_reported_together() -> None:
    """A misspelled step does not hide an undeclared connection, an unknown variable or a
    threshold naming no step elsewhere in the file: every mistake is listed in one go."""
    text = (
        "target: ws://127.0.0.1:9\n"
        "connections:\n  main: {url: /echo, timeout: 5 secs}\n"
        "steps:\n"
        "  - open: main\n"
        "  - raed: main\n"
        "  - write: {connection: other, text: '{{ nope }}'}\n"
        "thresholds:\n  - nosuchstep.p99 < 5ms\n"
    )
    found = problems(text)
    assert any(":3:" in p and "not a duration" in p for p in found), found
    assert any(":6:" in p and "did you mean 'read'" in p for p in found), found
    assert any(":7:" in p and "connection 'other' is not declared" in p for p in found), found
    assert any(":7:" in p and "unknown variable 'nope'" in p for p in found), found
    assert any(":9:" in p and "nosuchstep" in p for p in found), found
    # Nothing is reported twice, and nothing about the broken parts beyond the schema's words.
    assert len(found) == len(set(found)) == 5, found


@pytest.mark.parametrize(
    ("that", "message"),
    [
        ("lenght(items) > 1", "'lenght(items) > 1': JMESPath has no function 'lenght', did you mean"),
        ("length(a, b) == 2", "'length(a, b) == 2': length() takes 1 argument(s), got 2"),
        ("a = 3", "'a = 3' is not a JMESPath expression: Bad jmespath expression: Unknown token '='"),
        ("a == ", "'a == ' is not a JMESPath expression"),
    ],
)
def test_that_which_cannot_be_evaluated_is_refused_with_its_position(that: str, message: str) -> None:
    """A ``that`` entry that is no JMESPath expression (or calls an unknown function, or one with the
    wrong number of arguments) is a positioned problem at load, not a failure at run time."""
    text = BASE + f"steps:\n  - open: main\n  - read: main\n    expect:\n      that: [{that!r}]\n"
    found = problems(text)
    assert len(found) == 1 and found[0].startswith(f"t.yaml:9:14: steps[1].expect.that[0]: {message}")


def test_templated_urls_are_left_to_the_open() -> None:
    """URLs with templates (spaces inside ``{{ }}`` included) are not judged at load; the same URL
    written out with a space or a bad port is a positioned problem."""
    text = (
        "target: embedded\nvariables: {port: 9}\nconnections:\n"
        "  a: {url: '/echo?vu={{ vu }}'}\n  b: {url: 'ws://127.0.0.1:{{ port }}/x'}\n"
        "steps: [{open: a}, {open: b}]\n"
    )
    assert load(text).connections["a"].location.line == 4
    found = problems(text.replace("{{ vu }}", "1 2").replace("{{ port }}", "port"))
    assert found == [
        "t.yaml:4:12: connections.a.url: contains a space at position 11; percent-encode it "
        "(%20 for a space)",
        "t.yaml:5:12: connections.b.url: port 'port' is not a number from 1 to 65535",
    ]


def test_regex_and_jmespath_are_loaded_only_by_scenarios_that_use_them(tmp_path: Path) -> None:
    """A scenario without content checks (``hold.yaml``: connections held by sleeping users) is
    loaded and its engine imported without executing ``regex`` or ``jmespath`` (1.7 MiB and
    11 ms of every start); one with a regex and a ``that`` check gets both, and they work."""
    import subprocess
    import sys

    probe = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import runner.commands.run, runner.load.engine
        from runner.loader import load_scenario
        scenario = load_scenario(Path(sys.argv[1]))
        print(sorted(m for m in ("regex._main", "jmespath.parser") if m in sys.modules))
        if len(sys.argv) > 2:
            from runner.checks.expect import Message, check_content
            step = next(s for s in scenario.steps if getattr(s, "expect", None) and s.expect.content)
            check = step.expect.content
            print(check_content(check, Message('{"n": 3, "text": "abc42"}'), {}) is None)
            print(check_content(check, Message('{"n": 1, "text": "abc42"}'), {}).message)
        """
    )
    uses = tmp_path / "uses.yaml"
    uses.write_text(
        "name: uses\nconnections: {main: {url: 'ws://127.0.0.1:9/'}}\nsteps:\n  - open: main\n"
        "  - read: {connection: main}\n    expect: {regex: 'abc\\d+', that: 'n > `2`'}\n"
    )
    hold = subprocess.run(
        [sys.executable, "-c", probe, "scenarios/hold.yaml"], capture_output=True, text=True, timeout=60
    )
    assert hold.returncode == 0, hold.stderr
    assert hold.stdout.splitlines() == ["[]"]
    used = subprocess.run(
        [sys.executable, "-c", probe, str(uses), "check"], capture_output=True, text=True, timeout=60
    )
    assert used.returncode == 0, used.stderr
    loaded, passed, failed = used.stdout.splitlines()
    assert loaded == "['jmespath.parser', 'regex._main']"
    assert (passed, failed) == ("True", "expected n > `2`, got 1")


def test_regex_and_jmespath_loaded_at_first_use_from_threads_at_once() -> None:
    """Eight threads (shards of a cluster run share a Dask worker's threads) compile a regex
    or a JMESPath expression at the same moment, the first use in the process: each gets a
    working pattern, none a half-loaded module (the standard LazyLoader of Python 3.11 raised
    "module 'regex' has no attribute 'compile'" in most of them)."""
    import subprocess
    import sys

    probe = textwrap.dedent(
        """
        import threading
        from runner.checks.expect import _regex, compiled_jmespath
        barrier = threading.Barrier(8)
        results = []
        def use(i):
            barrier.wait()
            try:
                if i % 2:
                    results.append(_regex(f"a{i}+b").search(f"xa{i}{i}b") is not None)
                else:
                    results.append(compiled_jmespath(f"n{i} > `1`").search({f"n{i}": 2}))
            except Exception as exc:
                results.append(repr(exc))
        threads = [threading.Thread(target=use, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        print(results)
        """
    )
    for _ in range(3):  # fresh interpreters: the race is at the first use
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == str([True] * 8)


def test_repeat_times_written_as_a_float_is_a_count_of_rounds() -> None:
    """``times: 2.0`` is an integer to JSON Schema; the block runs two rounds whatever it holds
    (a block with an ``every`` inside ran its rounds with ``range(times)``: an internal error)."""
    scenario = load_scenario_text(
        "name: t\nconnections: {main: {url: 'ws://127.0.0.1:9/'}}\nsteps:\n"
        "  - repeat:\n      times: 2.0\n      steps:\n        - sleep: 1ms\n",
        file="t.yaml",
    )
    block = scenario.steps[0]
    assert isinstance(block, RepeatStep)
    assert block.times == 2 and type(block.times) is int
