"""Bad input: absurd values get a clear FILE:LINE:COL error before anything runs (``wsload run``
exits 2, no traceback), and property tests throw random text and values at the template engine
and the loader's limits: only our own error types come out, never a hang or a MemoryError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import scaled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import ScenarioError
from runner.loader import MAX_DURATION_S, MAX_PAYLOAD_BYTES, MAX_VUS, load_scenario_text
from runner.model import BinaryPayload, JsonPayload, Scenario, TextPayload, WriteStep
from runner.templates import JsonTemplate, Template, TemplateError

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
