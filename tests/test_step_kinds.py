"""Step kinds are one module each (runner/steps/<kind>.py) found by one registry, and the proof:
``quiet``, a kind added by writing its module (and its tests and docs) alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.errors import ScenarioError
from runner.loader import load_scenario_text
from runner.steps import KINDS
from runner.steps.quiet import QuietStep
from runner.steps.schema import text

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_schema_is_assembled_from_the_kinds() -> None:
    """runner/schemas/scenario.schema.json is the base schema plus every kind's fragment (after
    adding a kind: python -m runner.steps)."""
    shipped = (ROOT / "runner" / "schemas" / "scenario.schema.json").read_text()
    assert shipped == text(KINDS.values()), "run: python -m runner.steps"
    step = json.loads(shipped)["$defs"]["step"]
    assert [alt["required"][0] for alt in step["oneOf"]] == list(KINDS)


def test_every_kind_is_in_the_readme_steps_table() -> None:
    """The README's table of steps has a row for every kind, with what its rc means."""
    readme = (ROOT / "README.md").read_text()
    for kind in KINDS.values():
        assert f"| `{kind.name}` | {kind.summary} |" in readme, kind.name


QUIET = """\
name: quiet
target: embedded
connections:
  main: {{url: {url}, timeout: 5s}}
steps:
  - open: main
{steps}  - close: main
"""


def _run(tmp_path: Path, url: str, steps: str) -> tuple[int, dict]:
    path = tmp_path / "q.yaml"
    path.write_text(QUIET.format(url=url, steps=steps))
    out = tmp_path / "q.json"
    code = main(["run", str(path), "--json", str(out), "--report-dir", "", "-q"])
    return code, json.loads(out.read_text())


def test_quiet_passes_when_nothing_comes(tmp_path: Path) -> None:
    """An echo connection nobody writes to stays quiet for 200 ms: rc 0, latency the time waited."""
    code, doc = _run(tmp_path, "/echo", "  - quiet: {connection: main, for: 200ms}\n")
    assert code == 0, doc["error"]
    quiet = next(s for s in doc["steps"] if s["kind"] == "quiet")
    assert quiet["count"] == 1 and quiet["ok"] == 1 and 190 <= quiet["latency_ms"]["max"] < 1000


def test_quiet_fails_when_a_message_comes(tmp_path: Path) -> None:
    """A connection the server pushes on is not quiet: -1 with after how long and what came."""
    code, doc = _run(tmp_path, "/push?rate=20&count=5", "  - quiet: {connection: main, for: 2s}\n")
    assert code == 1
    quiet = next(s for s in doc["steps"] if s["kind"] == "quiet")
    assert quiet["rc"] == {"-1": 1} and quiet["errors"][0]["message"].startswith(
        "quiet returned rc -1, expected rc 0: a message came after "
    )
    assert '"seq": 0' in quiet["errors"][0]["message"]


def test_quiet_broadcast_room_on_a_server_we_did_not_write(tmp_path: Path, node_ws_url: str) -> None:
    """On the Node ws server's broadcast room: a member that just joined hears nothing while
    nobody talks (quiet holds), and fails its quiet once another member writes."""
    text = f"""\
name: room
connections:
  a: {{url: "{node_ws_url}/room/q", timeout: 5s}}
  b: {{url: "{node_ws_url}/room/q", timeout: 5s}}
steps:
  - open: a
  - open: b
  - name: nobody talks
    quiet: {{connection: a, for: 150ms}}
  - write: {{connection: b, text: hello}}
  - name: b talks
    quiet: {{connection: a, for: 2s}}
    expect: {{rc: -1}}
  - close: a
  - close: b
"""
    path = tmp_path / "room.yaml"
    path.write_text(text)
    out = tmp_path / "room.json"
    assert main(["run", str(path), "--json", str(out), "--report-dir", "", "-q"]) == 0
    steps = {s["name"]: s for s in json.loads(out.read_text())["steps"]}
    assert steps["nobody talks"]["ok"] == 1 and steps["b talks"]["ok"] == 1


def test_quiet_is_checked_like_any_step(tmp_path: Path) -> None:
    """Without ``for`` it is a positioned problem; on an undeclared connection a did-you-mean;
    the model is the kind's own class."""
    base = "name: q\ntarget: embedded\nconnections: {main: {url: /echo}}\nsteps:\n  - open: main\n"
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(base + "  - quiet: {connection: main}\n", "q.yaml")
    assert "q.yaml:6:" in str(err.value) and "for" in str(err.value)
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(base + "  - quiet: {connection: mian, for: 1s}\n", "q.yaml")
    assert "connection 'mian' is not declared, did you mean 'main'?" in str(err.value)
    scenario = load_scenario_text(base + "  - quiet: {connection: main, for: 1s}\n", "q.yaml")
    step = scenario.steps[1]
    assert isinstance(step, QuietStep) and step.for_s == 1.0 and step.name == "quiet main"
