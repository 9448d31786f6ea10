"""Property tests: whatever text arrives, the loader returns a Scenario or raises ScenarioError only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import ScenarioError
from runner.loader import load_scenario_text
from runner.scenario.model import Scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
VALID = {p.name: p.read_text() for p in sorted(SCENARIOS.glob("*.yaml"))}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

YAMLISH = st.text(
    alphabet=st.sampled_from([*"abc:- \n\t{}[],'\"&*!|>#%@`?.0123456789${}/<=", "\u00e9", "\x00"]),
    max_size=200,
)
WORDS = [
    "open",
    "read",
    "write",
    "close",
    "sleep",
    "ping",
    "repeat",
    "main",
    "steps",
    "connections",
    "url",
    "/echo",
    "ws://x",
    "http://x",
    "{{ x }}",
    "{{ iteration }}",
    "${HOME}",
    "1s",
    "-1",
    "10d",
    "expect",
    "match",
    "json",
    "text",
    "capture",
    "times",
    "load",
    "vus",
    "thresholds",
    "read.p99 < 1s",
    "target",
    "embedded",
    "ignoreSslErrors",
    "sslConfig",
    "binary",
    "hex",
    "size",
    "1GiB",
    "that",
    "a..b",
    "(",
    "",
    "null",
    "true",
    "&a",
    "*a",
    "<<",
    "---",
    "\t",
    "~",
]


def check(text: str) -> None:
    try:
        result = load_scenario_text(text, file="fuzz.yaml", base_dir=SCENARIOS, environ={"HOME": "/home/x"})
    except ScenarioError as exc:
        assert exc.problems, "a ScenarioError always names at least one problem"
        for problem in exc.problems:
            assert problem.line >= 1 and problem.column >= 1
        str(exc)
    else:
        assert isinstance(result, Scenario)


@FUZZ
@given(YAMLISH)
def test_random_text(text: str) -> None:
    """Random YAML-like text never escapes as anything but ScenarioError."""
    check(text)


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = VALID[draw(st.sampled_from(sorted(VALID)))]
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        pos = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["delete", "insert", "word", "dupline", "swap"]))
        if op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 20)) :]
        elif op == "insert":
            text = text[:pos] + draw(YAMLISH) + text[pos:]
        elif op == "word":
            end = pos + draw(st.integers(0, 12))
            text = text[:pos] + draw(st.sampled_from(WORDS)) + text[end:]
        else:
            lines = text.splitlines(keepends=True)
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if op == "dupline":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


@FUZZ
@given(mutated_text())
def test_mutated_valid_files(text: str) -> None:
    """Character-level mutations of the bundled scenarios never escape as anything but ScenarioError."""
    check(text)


LEAVES = st.one_of(
    st.sampled_from(WORDS),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
)
TREES = st.recursive(
    LEAVES,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(WORDS), kids, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_tree(draw: st.DrawFn) -> str:
    data = yaml.safe_load(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(TREES)
    return yaml.safe_dump(data, sort_keys=False)


@FUZZ
@given(mutated_tree())
def test_mutated_valid_structures(text: str) -> None:
    """Values replaced by random trees (good YAML, wrong shapes) raise nothing but ScenarioError."""
    check(text)
