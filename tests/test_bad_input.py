"""Bad input: absurd values get a clear FILE:LINE:COL error before anything runs (``wsload run``
exits 2, no traceback), and property tests throw random text and values at the template engine
and the loader's limits: only our own error types come out, never a hang or a MemoryError."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import scaled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import ScenarioError
from runner.loader import MAX_DURATION_S, MAX_PAYLOAD_BYTES, MAX_VUS, load_scenario_text
from runner.scenario.model import Scenario
from runner.scenario.source import parse_yaml
from runner.scenario.templates import JsonTemplate, Template, TemplateError
from runner.steps.write import BinaryPayload, JsonPayload, TextPayload, WriteStep

ROOT = Path(__file__).resolve().parent.parent
HEAD = "connections:\n  m: {url: 'ws://127.0.0.1:9/'}\nsteps:\n  - open: m\n"
BIG = "x" * (2 << 20)

#: name -> (scenario text, the line:col and message the error must carry)
ABSURD: dict[str, tuple[str, str]] = {
    "ten_million_vus": (
        HEAD + "load: {vus: 10000000, duration: 1m}\n",
        "5:13: load.vus: 10000000 virtual users is more than 1,000,000",
    ),
    "duration_of_years": (
        HEAD + "load: {vus: 1, duration: 87600h}\n",
        "5:26: load.duration: '87600h' is longer than 7 days",
    ),
    "sleep_of_years": (HEAD + "  - sleep: 3650d\n", "5:12: steps[1].sleep: '3650d' is longer than 7 days"),
    "negative_size": (
        HEAD + "  - write: {connection: m, binary: {size: -5B}}\n",
        "5:43: steps[1].write.binary.size: the text '-5B' is not a size",
    ),
    "negative_timeout": (
        HEAD + "  - read: {connection: m, timeout: -1s}\n",
        "5:36: steps[1].read.timeout: the text '-1s' is not a duration",
    ),
    "negative_max_message_size": (
        "connections:\n  m: {url: 'ws://127.0.0.1:9/', maxMessageSize: -1}\nsteps:\n  - open: m\n",
        "2:49: connections.m.maxMessageSize: must be at least 0, got -1",
    ),
    "one_gigabyte_payload": (
        HEAD + "  - write: {connection: m, binary: {size: 1GiB}}\n",
        "5:43: steps[1].write.binary.size: '1GiB' is larger than the 16 MiB payload limit",
    ),
    "inline_json_over_16_mib_by_aliases": (
        f"variables:\n  s: &s '{BIG}'\n"
        + HEAD
        + "  - write: {connection: m, json: [*s,*s,*s,*s,*s,*s,*s,*s,*s]}\n",
        "7:34: steps[1].write.json: inline JSON is larger than 16 MiB",
    ),
    "string_alias_bomb": (
        f"variables:\n  s: &s '{BIG}'\n  a: &a [*s,*s,*s,*s,*s,*s,*s,*s,*s,*s]\n"
        "  b: [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n" + HEAD,
        "1:1: variables: document too large or too deep: more than 200000 values, 32 MiB of text",
    ),
    "exponential_aliases": (
        "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n" + HEAD,
        "6:1: f: document too large or too deep",
    ),
    "deeply_nested": (
        "steps: " + "[" * 5000 + "]" * 5000 + "\n",
        "1:71: YAML syntax error: nesting deeper than 64 levels",
    ),
    "number_of_5000_digits": (
        HEAD + "  - sleep: " + "9" * 5000 + "\n",
        "5:12: steps[1].sleep: value cannot be read: Exceeds the limit (4300 digits)",
    ),
    "template_number_of_5000_digits": (
        HEAD + "  - write: {connection: m, text: '{{ random_int(1, " + "9" * 5000 + ") }}'}\n",
        "5:34: steps[1].write.text: template error: the number 99999999999999999999... has too many digits",
    ),
    "nested_repeats": (
        HEAD + "  - repeat: {times: 100000, steps: [{repeat: {times: 100000, steps: [{sleep: 0s}]}}]}\n",
        "5:54: steps[1].repeat.steps[0].repeat.times: nested repeats multiply to 10000000000 repetitions",
    ),
    "iterations_beyond_a_billion": (
        HEAD + "load: {vus: 1, iterations: 100000000000000000000}\n",
        "5:28: load.iterations: 100000000000000000000 iterations is more than 1,000,000,000",
    ),
    "hundred_million_workers": (
        HEAD + "load: {vus: 1, duration: 1s, workers: 100000000}\n",
        "5:39: load.workers: 100000000 worker processes is more than 1024",
    ),
    "regex_repeated_a_hundred_million_times": (
        HEAD + "  - read: {connection: m, match: {regex: 'x{100000000}'}}\n",
        "5:42: steps[1].read.match.regex: regular expression too large: it repeats to about "
        "100,000,000 items, more than 10,000",
    ),
    "nested_regex_repeats_in_expect": (
        HEAD + "  - read: m\n    expect: {regex: '(ab(?:c{100}){100}){100}'}\n",
        "6:21: steps[1].expect.regex: regular expression too large: it repeats to about 1,000,200 items",
    ),
    "regex_repeats_in_a_capture": (
        HEAD + "  - read: m\n    capture: {v: {regex: '(x{20000,})'}}\n",
        "6:26: steps[1].capture.v.regex: regular expression too large: it repeats to about 20,000 items",
    ),
    "unclosed_ipv6_bracket": (
        "connections:\n  m: {url: 'ws://[::1/x'}\nsteps:\n  - open: m\n",
        "2:12: connections.m.url: the host has an unclosed '[' or a stray ']'",
    ),
    "ipv6_host_that_is_not_an_address": (
        "connections:\n  m: {url: 'ws://[zz]:80/'}\nsteps:\n  - open: m\n",
        "2:12: connections.m.url: the host is not valid: 'zz' does not appear to be an IPv4 or IPv6 address",
    ),
    "port_that_is_not_a_number": (
        "connections:\n  m: {url: 'ws://127.0.0.1:eighty/'}\nsteps:\n  - open: m\n",
        "2:12: connections.m.url: port 'eighty' is not a number from 1 to 65535",
    ),
    "port_out_of_range": (
        "connections:\n  m: {url: 'ws://127.0.0.1:99999/'}\nsteps:\n  - open: m\n",
        "2:12: connections.m.url: port '99999' is not a number from 1 to 65535",
    ),
    "space_in_url": (
        "connections:\n  m: {url: 'ws://127.0.0.1:9/a b'}\nsteps:\n  - open: m\n",
        "2:12: connections.m.url: contains a space at position 19; percent-encode it",
    ),
    "target_with_empty_port": (
        "target: 'ws://127.0.0.1:'\nconnections:\n  m: {url: /echo}\nsteps:\n  - open: m\n",
        "1:9: target: not a valid URL: the port after ':' is empty",
    ),
    "target_with_bad_port": (
        "target: 'ws://127.0.0.1:0'\nconnections:\n  m: {url: /echo}\nsteps:\n  - open: m\n",
        "1:9: target: not a valid URL: port '0' is not a number from 1 to 65535",
    ),
}


@pytest.mark.parametrize("name", sorted(ABSURD))
def test_absurd_value_is_a_positioned_problem(name: str) -> None:
    """Each absurd value is a ScenarioError at the line and column of the value, saying what is wrong."""
    text, expected = ABSURD[name]
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(text, file=f"{name}.yaml")
    assert f"{name}.yaml:{expected}" in str(caught.value)


def test_wsload_run_on_absurd_files_exits_2_before_running(tmp_path: Path) -> None:
    """``wsload run`` on every absurd file at once: exit 2, each file's FILE:LINE:COL problem on
    stderr, no traceback, nothing run (no report written), in bounded time."""
    files = []
    for name, (text, _) in ABSURD.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        files.append(str(path))
    huge = tmp_path / "larger_than_16_mib.yaml"
    huge.write_text("# " + "x" * (16 << 20) + "\n")
    files.append(str(huge))
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "run", *files, "--report-dir", str(tmp_path / "reports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for name, (_, expected) in ABSURD.items():
        assert f"{tmp_path / name}.yaml:{expected}" in proc.stderr, name
    assert f"{huge}:1:1: larger than 16 MiB; is this a scenario file?" in proc.stderr
    assert not (tmp_path / "reports").exists()


def _measured(args: list[str], *, timeout: float) -> tuple[int, str, float, float]:
    """Run ``python -m runner ARGS``: exit code, stdout + stderr, seconds, and the child's peak RSS
    in MiB (``wait4``). Its address space is capped at 2 GiB, so a regression ends in a
    MemoryError here instead of swapping the machine."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=out, stderr=out, preexec_fn=cap
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return proc.returncode, text, seconds, usage.ru_maxrss / 1024


def _endless_fifo(path: Path, stop: threading.Event) -> None:
    """Write zeros into the FIFO at ``path`` until its reader closes it (at most 64 MiB)."""
    deadline = time.monotonic() + scaled(20)
    fd = -1
    while fd < 0 and not stop.is_set() and time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until the reader opens it
        except OSError:
            time.sleep(0.01)
    if fd < 0:
        return
    os.set_blocking(fd, True)
    try:
        for _ in range(64):
            os.write(fd, bytes(1 << 20))
    except OSError:  # EPIPE: the reader has read enough and closed its end
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("source", ["dev_zero", "dev_urandom", "fifo"])
def test_endless_stream_as_file_is_refused_after_16_mib(tmp_path: Path, command: str, source: str) -> None:
    """An endless stream as FILE (/dev/zero, /dev/urandom, a FIFO fed forever) is refused at
    FILE:1:1 as larger than 16 MiB after reading at most that much: exit 2, no traceback,
    bounded time and memory (it used to read 9 GB in 20 s)."""
    stop = threading.Event()
    writer = None
    if source == "fifo":
        path = tmp_path / "scenario.yaml"
        os.mkfifo(path)
        writer = threading.Thread(target=_endless_fifo, args=(path, stop), daemon=True)
        writer.start()
    else:
        path = Path("/dev/zero" if source == "dev_zero" else "/dev/urandom")
    try:
        extra = ["--report-dir", str(tmp_path / "reports")] if command == "run" else []
        code, output, seconds, rss_mib = _measured([command, str(path), *extra], timeout=scaled(30))
    finally:
        stop.set()
        if writer is not None:
            writer.join(scaled(10))
    assert code == 2, output[-2000:]
    assert f"{path}:1:1: larger than 16 MiB; is this a scenario file?" in output
    assert "Traceback" not in output
    assert seconds < scaled(10) and rss_mib < 400, (seconds, rss_mib)


def test_payload_file_that_is_an_endless_stream_is_refused(tmp_path: Path) -> None:
    """A payload ``file:`` naming /dev/zero is refused as larger than 16 MiB, not read forever."""
    text = HEAD + "  - write: {connection: m, binary: {file: /dev/zero}}\n"
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(text, file="f.yaml", base_dir=tmp_path)
    expected = "f.yaml:5:43: steps[1].write.binary.file: file '/dev/zero' is larger than 16 MiB"
    assert expected in str(caught.value)


def _small_values(size: int) -> str:
    """A scenario whose variables hold a list of one-character values, ``size`` characters long."""
    head = "steps:\n  - sleep: 1ms\nvariables:\n  list:\n"
    return head + "    - 1\n" * ((size - len(head)) // 8)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_fifteen_mib_of_small_values_is_refused_fast(tmp_path: Path, command: str) -> None:
    """15 MiB of small values is refused at value 200,001, positioned, in under a few seconds and
    with little memory (it took 46 s and 1.8 GB): values are counted on libyaml's event stream
    before any tree is built."""
    path = tmp_path / "values.yaml"
    path.write_text(_small_values(15 << 20))
    extra = ["--report-dir", str(tmp_path / "reports")] if command == "run" else []
    code, output, seconds, rss_mib = _measured([command, str(path), *extra], timeout=scaled(60))
    assert code == 2, output[-2000:]
    assert f"{path}:199999:7: variables: more than 200,000 values in the file" in output
    assert seconds < scaled(5) and rss_mib < 200, (seconds, rss_mib)


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure_python"])
def test_value_count_holds_with_and_without_libyaml(libyaml: bool) -> None:
    """The value bound holds in both parsers (libyaml's event count, and the composer's own count
    where libyaml is missing), at the same position, before anything is built."""
    text = "steps:\n  - sleep: 1ms\nvariables:\n  list: [" + "1, " * 1200 + "1]\n"
    with pytest.raises(ScenarioError) as caught:
        parse_yaml(text, "f.yaml", max_values=1000, libyaml=libyaml)
    (problem,) = caught.value.problems
    assert (problem.line, problem.column, problem.path) == (4, 2992, "variables")  # value 1001
    assert "more than 200,000 values in the file" in problem.message  # the documented bound's text
    short = "steps:\n  - sleep: 1ms\nvariables:\n  list: [" + "1, " * 900 + "1]\n"
    parsed = parse_yaml(short, "f.yaml", max_values=1000, libyaml=libyaml)[0]
    assert len(parsed["variables"]["list"]) == 901  # type: ignore[index]


def test_thousands_of_problems_are_listed_fast_and_capped(tmp_path: Path) -> None:
    """A file with 30,000 unknown keys lists the first 200 problems and says there are more, in
    seconds (each problem used to split the whole file into lines again: minutes)."""
    path = tmp_path / "keys.yaml"
    path.write_text("steps:\n  - sleep: 1ms\n" + "".join(f"k{i}: 1\n" for i in range(30_000)))
    code, output, seconds, _ = _measured(["validate", str(path)], timeout=scaled(60))
    assert code == 2, output[-2000:]
    assert f"{path}:3:1: k0: unknown key 'k0'" in output
    assert f"{path}:202:1: k199: unknown key 'k199'" in output and "k200: unknown key" not in output
    assert f"{path}:203:" in output and "more than 200 problems; the rest are not listed" in output
    assert seconds < scaled(10), seconds


def test_more_steps_than_the_bound_are_refused_before_the_schema() -> None:
    """More than 10,000 steps is one positioned problem, found before the schema is checked."""
    text = "steps:\n" + "  - sleep: 1ms\n" * 10_001
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(text, file="f.yaml")
    assert str(caught.value.problems[0]).startswith(
        "f.yaml:10002:5: steps[10000]: more than 10,000 steps; use 'repeat'"
    )


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("ws://[zz]:80", "not a valid URL: the host is not valid: 'zz' does not appear to be an IPv4"),
        ("ws://[::1/x", "not a valid URL: the host has an unclosed '[' or a stray ']'"),
        ("ws://127.0.0.1:http/", "not a valid URL: port 'http' is not a number from 1 to 65535"),
        ("ws://127.0.0.1:99999/", "not a valid URL: port '99999' is not a number from 1 to 65535"),
        ("http://127.0.0.1:8080", "target 'http://127.0.0.1:8080' uses http://"),
    ],
)
def test_bad_target_option_is_the_command_lines_mistake(command: str, target: str, message: str) -> None:
    """A malformed ``--target`` is exit 2 with ``command line: --target: ...`` (not a traceback,
    not a problem of the scenario file), before any file is read."""
    smoke = str(ROOT / "scenarios" / "smoke.yaml")
    extra = ["--report-dir", ""] if command == "run" else []
    proc = subprocess.run(
        [sys.executable, "-m", "runner", command, smoke, "--target", target, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(30),
        env={k: v for k, v in os.environ.items() if k != "WSLOAD_TARGET"},
    )
    assert proc.returncode == 2, proc.stderr
    assert f"wsload: command line: --target: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr and smoke not in proc.stderr + proc.stdout


# --- property tests ---------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [*"{}()'\",. _-+0123456789abxyz", "{{", "}}", "uuid", "random_int", "random_string", "now_ms",
          "timestamp", "iteration", "vu", "session", "9" * 5000, "\x00", "\u00e9"]  # fmt: skip
TEMPLATE_TEXT = st.lists(st.sampled_from(TOKENS), max_size=16).map("".join)
CONTEXT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "0", "id"]), kids),
    max_leaves=8,
)
CONTEXTS = st.dictionaries(st.sampled_from(["x", "y", "session", "iteration", "vu", "a"]), CONTEXT_VALUES)


@FUZZ
@given(TEMPLATE_TEXT, CONTEXTS)
def test_templates_raise_only_template_error(source: str, ctx: dict[str, object]) -> None:
    """Any text compiles to a Template or raises TemplateError; rendering raises nothing else either."""
    try:
        template = Template(source)
    except TemplateError:
        return
    try:
        rendered = template.render(ctx)
        template.render_value(ctx)
    except TemplateError:
        assert template.names - frozenset(ctx) or "." in source, source  # a missing name or item
        return
    assert isinstance(rendered, str)


@FUZZ
@given(st.recursive(TEMPLATE_TEXT | st.integers() | st.none(), lambda k: st.lists(k, max_size=3)
                    | st.dictionaries(st.sampled_from(["k", "id"]), k), max_leaves=6), CONTEXTS)  # fmt: skip
def test_json_templates_raise_only_template_error(value: object, ctx: dict[str, object]) -> None:
    """A JSON tree of random template strings compiles or raises TemplateError; dumps gives JSON text or
    TemplateError."""
    try:
        template = JsonTemplate(value)
    except TemplateError:
        return
    try:
        text = template.dumps(ctx)
    except TemplateError:
        return
    assert isinstance(text, str)


DURATIONS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.tuples(st.integers(-5, 10**15), st.sampled_from(["us", "ms", "s", "m", "h", "d", "y", ""])).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
    st.sampled_from(["1e308", ".inf", "-.inf", ".nan", "null", "'1h'", "[1]", "{a: 1}", "1_000_000h"]),
)
SIZES = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.tuples(st.integers(-5, 10**12), st.sampled_from(["B", "KiB", "MiB", "GiB", "KB", "MB", "TB", ""])).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
    st.sampled_from(["1e9", ".inf", "-0", "null", "16MiB", "16777217B"]),
)
COUNTS = st.one_of(st.integers(-(10**30), 10**30).map(str), st.sampled_from(["1.5", "1e7", ".inf", "null"]))


def _durations_of(scenario: Scenario) -> list[float]:
    load = scenario.load
    values = [scenario.read_timeout_s, scenario.run_timeout_s]
    if load is not None:
        values += [load.duration_s or 0.0, load.ramp_up_s, load.graceful_stop_s, load.think_time_s]
    return values


@FUZZ
@given(DURATIONS, SIZES, COUNTS, COUNTS)
def test_absurd_numbers_error_or_stay_within_limits(duration: str, size: str, vus: str, times: str) -> None:
    """Random (often absurd) durations, sizes and counts: a ScenarioError, or a scenario whose values
    are all within the documented limits."""
    text = (
        f"defaults: {{read_timeout: {duration}}}\n" + HEAD
        + f"  - write: {{connection: m, binary: {{size: {size}}}}}\n"
        + f"  - repeat: {{times: {times}, steps: [{{sleep: {duration}}}]}}\n"
        + f"load: {{vus: {vus}, duration: {duration}}}\n"
    )  # fmt: skip
    try:
        scenario = load_scenario_text(text, file="fuzz.yaml")
    except ScenarioError as exc:
        assert all(p.line >= 1 and p.column >= 1 for p in exc.problems)
        return
    assert all(0 <= d <= MAX_DURATION_S for d in _durations_of(scenario))
    assert scenario.load is not None and 1 <= scenario.load.vus <= MAX_VUS
    write = scenario.steps[1]
    assert isinstance(write, WriteStep) and isinstance(
        write.payload, BinaryPayload | JsonPayload | TextPayload
    )
    assert isinstance(write.payload, BinaryPayload) and len(write.payload.data) <= MAX_PAYLOAD_BYTES
