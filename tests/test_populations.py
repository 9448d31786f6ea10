"""Plans of several populations in one run (``populations:``): each population's own load,
figures and thresholds side by side, the whole judged run-wide; on the embedded room and on the
Node ``ws`` room; over workers and over shards merged exactly; and the mistakes a plan can hold,
each named with its file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.errors import ScenarioError
from runner.loader import load_scenario
from runner.loader.populations import split_by_weight

ROOT = Path(__file__).resolve().parent.parent

PUBLISHER = """\
name: publisher
target: {target}
connections:
  room: {{url: "/room/{room}", timeout: 5s}}
steps:
  - open: room
  - sleep: 1s
  - repeat:
      times: {quotes}
      steps:
        - name: publish
          write:
            connection: room
            json: {{id: "{{{{ uuid() }}}}", sent_at: "{{{{ now_us() }}}}"}}
        - sleep: {{min: 40ms, max: 60ms}}   # drawn: the run has a seed to say
  - close: room
load: {{vus: 1, iterations: 1}}
"""

SUBSCRIBER = """\
name: subscriber
target: {target}
connections:
  room: {{url: "/room/{room}", timeout: 5s}}
steps:
  - open: room
  - name: quote
    receive:
      connection: room
      count: {quotes}
      for: 10s
      latency_from: {{json: sent_at, unit: us, id: id}}
  - close: room
load: {{vus: {subscribers}, iterations: 1}}
thresholds:
  - quote.delivery_p99 < 500ms
"""

PLAN = """\
name: market
populations:
  - name: pub
    file: publisher.yaml
  - name: sub
    file: subscriber.yaml
    thresholds: ["quote.received >= {received}"]
thresholds:
  - sub/quote.reach_min >= {subscribers}
  - errors.rate == 0%
"""


def write_plan(
    tmp_path: Path, *, target: str, room: str, subscribers: int = 12, quotes: int = 10, plan: str = PLAN
) -> Path:
    values = {"target": target, "room": room, "quotes": quotes, "subscribers": subscribers}
    (tmp_path / "publisher.yaml").write_text(PUBLISHER.format(**values))
    (tmp_path / "subscriber.yaml").write_text(SUBSCRIBER.format(**values))
    path = tmp_path / "plan.yaml"
    path.write_text(plan.format(received=subscribers * quotes, **values))
    return path


def run_plan(path: Path, *args: str, out: str = "r.json") -> tuple[int, dict[str, Any]]:
    report = path.parent / out
    code = main(["run", str(path), "--json", str(report), "--report-dir", "", "-q", *args])
    return code, json.loads(report.read_text())


def population(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in doc["populations"] if p["scenario"]["name"] == name)


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["name"] == name)


def test_publisher_and_subscribers_on_the_embedded_room_side_by_side(tmp_path: Path) -> None:
    """One run, two populations with their own loads: every quote reaches every subscriber, each
    population's figures are its own, and the run's step table names steps POPULATION/STEP."""
    path = write_plan(tmp_path, target="embedded", room="quotes", subscribers=12, quotes=10)
    code, doc = run_plan(path, "--workers", "1", "--seed", "7")
    assert code == 0, doc["error"]
    assert doc["passed"] is True
    pub, sub = population(doc, "pub"), population(doc, "sub")
    assert pub["iterations"]["completed"] == 1 and sub["iterations"]["completed"] == 12
    assert doc["settings"]["seed"] == 7 == pub["settings"]["seed"]  # --seed, where the README says
    assert pub["settings"]["load"]["vus"] == 1 and sub["settings"]["load"]["vus"] == 12
    assert step(sub, "quote")["received"] == 120  # the population's own name for its step
    assert step(doc, "sub/quote")["received"] == 120  # and the run's
    assert step(doc, "pub/publish")["count"] == 10
    assert doc["iterations"]["completed"] == 13  # the run's: every population's
    reach = step(doc, "sub/quote")["reach"]
    assert reach["messages"] == 10 and reach["receivers_min"] == 12
    expressions = [t["expression"] for t in doc["thresholds"]]
    assert "sub/quote.reach_min >= 12" in expressions  # the plan's own, run-wide
    assert "sub/quote.delivery_p99 < 500ms" in expressions  # the population's file's
    assert "sub/quote.received >= 120" in expressions  # the plan's entry's for the population
    own = next(t for t in doc["thresholds"] if t["expression"] == "sub/quote.delivery_p99 < 500ms")
    assert own["file"].endswith("subscriber.yaml") and own["line"] == 16


def test_plan_over_two_workers_against_the_node_room(tmp_path: Path, node_ws_url: str) -> None:
    """Over two worker processes against a room we did not write (Node ``ws``): each population
    is split over the workers and still every quote reaches every subscriber."""
    path = write_plan(tmp_path, target=node_ws_url, room="workers", subscribers=16, quotes=10)
    code, doc = run_plan(path, "--workers", "2")
    assert code == 0, doc["error"]
    assert doc["settings"]["load"]["workers"] == 2
    sub = population(doc, "sub")
    assert sub["iterations"]["completed"] == 16
    assert step(doc, "sub/quote")["reach"]["receivers_min"] == 16
    assert step(doc, "sub/quote")["received"] == 160
    # the gauges are each population's, summed over the workers
    assert max(s.get("vus") or 0 for s in sub["timeseries"]) == 16


def test_sharded_plan_merges_to_what_the_whole_run_counts(tmp_path: Path, node_ws_url: str) -> None:
    """Two shards of a plan merged (``wsload merge``) count exactly what the whole run counts:
    per population and run-wide, iterations, executions, messages and reach."""
    whole_dir, shard_dir = tmp_path / "whole", tmp_path / "shards"
    whole_dir.mkdir()
    shard_dir.mkdir()
    whole_plan = write_plan(whole_dir, target=node_ws_url, room="whole", subscribers=10, quotes=8)
    code, whole = run_plan(whole_plan, "--workers", "1")
    assert code == 0, whole["error"]
    shard_plan = write_plan(shard_dir, target=node_ws_url, room="sharded", subscribers=10, quotes=8)
    start = "--start-at=" + _soon()
    codes = []
    import threading

    def shard(k: int) -> None:
        codes.append(run_plan(shard_plan, "--shard", f"{k}/2", start, out=f"s{k}.json")[0])

    threads = [threading.Thread(target=shard, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    merged_path = shard_dir / "merged.json"
    code = main(
        ["merge", str(shard_dir / "s1.json"), str(shard_dir / "s2.json"), "-o", str(merged_path), "-q"]
    )
    merged = json.loads(merged_path.read_text())
    assert code == 0, merged["error"]

    def counts(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "iterations": doc["iterations"],
            "steps": {s["name"]: (s["count"], s["ok"], s.get("received")) for s in doc["steps"]},
            "reach": {
                s["name"]: (s["reach"]["messages"], s["reach"]["receivers_min"], s["reach"]["receivers_max"])
                for s in doc["steps"]
                if s.get("reach")
            },
            "populations": {
                p["scenario"]["name"]: (p["iterations"], [(s["name"], s["count"]) for s in p["steps"]])
                for p in doc["populations"]
            },
        }

    assert counts(merged) == counts(whole)
    assert [t["expression"] for t in merged["thresholds"]] == [t["expression"] for t in whole["thresholds"]]
    assert merged["settings"]["load"]["shards"] == 2


def _soon() -> str:
    import datetime as dt

    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def test_a_failing_population_fails_the_plan_by_name(tmp_path: Path) -> None:
    """Subscribers that wait for more quotes than the publisher sends time out: their
    population fails, named, and so does the run (exit 1), while the publisher passes."""
    plan = PLAN.replace('thresholds: ["quote.received >= {received}"]', "load: {{vus: 4, iterations: 1}}")
    path = write_plan(tmp_path, target="embedded", room="short", subscribers=4, quotes=5, plan=plan)
    text = (
        (tmp_path / "subscriber.yaml")
        .read_text()
        .replace("count: 5", "count: 6")
        .replace("for: 10s", "for: 3s")
    )
    (tmp_path / "subscriber.yaml").write_text(text)
    code, doc = run_plan(path, "--workers", "1")
    assert code == 1
    assert population(doc, "pub")["passed"] is True
    assert population(doc, "sub")["passed"] is False
    assert population(doc, "sub")["settings"]["load"]["vus"] == 4  # the plan's load replaced the file's
    assert step(doc, "sub/quote")["failures"] == 4
    assert step(doc, "sub/quote")["errors"][0]["rc"] == -2


def test_weights_share_the_plans_users(tmp_path: Path) -> None:
    """``weight:`` shares the plan's closed-model users (largest remainder): 5% writers, 95%
    readers of 40 users are 2 and 38, and the shares always add up."""
    (tmp_path / "a.yaml").write_text("steps: [{sleep: 1ms}]\n")
    (tmp_path / "b.yaml").write_text("steps: [{sleep: 1ms}]\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "populations:\n  - {file: a.yaml, weight: 5}\n  - {file: b.yaml, weight: 95}\n"
        "load: {vus: 40, duration: 5s, ramp_up: 2s}\n"
    )
    scenario = load_scenario(plan)
    a, b = scenario.populations
    assert (a.name, a.load.vus, b.name, b.load.vus) == ("a", 2, "b", 38)  # type: ignore[union-attr]
    assert a.load.ramp_up_s == 2.0 and a.load.duration_s == 5.0  # type: ignore[union-attr]
    assert scenario.load is not None and scenario.load.vus == 40
    assert split_by_weight(7, [1, 1, 1]) == [3, 2, 2]
    assert sum(split_by_weight(1001, [0.3, 2.5, 7, 1])) == 1001


@pytest.mark.parametrize(
    ("plan", "line", "says"),
    [
        ("populations:\n  - {file: a.yaml, lode: {vus: 1}}\n", 2, "lode"),
        ("populations:\n  - {file: missing.yaml}\n", 2, "no scenario file"),
        ("populations:\n  - {file: a.yaml}\n  - {file: a.yaml}\n", 3, "named twice"),
        ("populations:\n  - {file: a.yaml}\nthresholds: [a/sleap.p99 < 1s]\n", 3, "did you mean 'a/sleep"),
        ("populations:\n  - {file: a.yaml, weight: 2}\n", 1, "closed-model 'load'"),
        ("populations:\n  - {file: b.yaml}\n", 2, "has no load"),
        ("populations:\n  - {file: a.yaml}\nsteps: [{sleep: 1ms}]\n", 3, "belongs in a population's"),
        ("populations:\n  - {file: a.yaml, load: {vus: 1, duration: 1s, workers: 2}}\n", 2, "whole run's"),
        # A list item indented under the target folds into it (found by tests/test_loader_fuzz.py):
        # the plan's line, not a '--target' mistake of the command line in each population's file.
        ("target: embedded\n  - a/sleep.p99 < 1s\npopulations:\n  - {file: a.yaml}\n", 1, "must be a ws://"),
    ],
)
def test_plan_mistakes_name_file_and_line(tmp_path: Path, plan: str, line: int, says: str) -> None:
    """Each mistake a plan can hold is an error with the plan's file and line, exit code 2."""
    (tmp_path / "a.yaml").write_text("steps: [{sleep: 1ms}]\nload: {vus: 1, iterations: 1}\n")
    (tmp_path / "b.yaml").write_text("steps: [{sleep: 1ms}]\n")
    path = tmp_path / "plan.yaml"
    path.write_text(plan)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert f"plan.yaml:{line}:" in text and says in text, text
    assert main(["validate", str(path)]) == 2


def test_a_population_files_own_mistake_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("steps:\n  - slep: 1ms\n")
    path = tmp_path / "plan.yaml"
    path.write_text("populations:\n  - {file: a.yaml, load: {vus: 1, iterations: 1}}\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert "a.yaml:2:" in str(caught.value) and "slep" in str(caught.value)


def test_load_shape_options_and_check_are_refused_for_a_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_plan(tmp_path, target="embedded", room="refused")
    assert main(["run", str(path), "--vus", "5", "--report-dir", ""]) == 2
    assert "each have their own" in capsys.readouterr().err
    assert main(["run", str(path), "--check", "--report-dir", ""]) == 2
    assert "plan of populations" in capsys.readouterr().err
    assert main(["run", str(path), "--check-capacity", "--report-dir", ""]) == 2
    assert "each population's file on its own" in capsys.readouterr().err


def test_bundled_populations_example_passes_and_its_html_shows_them_side_by_side(tmp_path: Path) -> None:
    """scenarios/populations.yaml, as the README runs it; the HTML report has the populations'
    table and a chart line per population."""
    html = tmp_path / "r.html"
    code = main(
        ["run", str(ROOT / "scenarios" / "populations.yaml"), "--report-dir", "", "-q", "--html", str(html)]
    )
    assert code == 0
    page = html.read_text()
    assert "<h2>Populations</h2>" in page
    assert '"id": "population-' in page or '"id":"population-' in page
    assert page.count(">PASS<") >= 3  # the run and each population
    table = page.split("<h2>Populations</h2>", 1)[1].split("</table>", 1)[0]
    for row in table.split("<tr>")[2:]:  # each population: its verdict badge, then "stopped early"
        cells = row.split("<td")
        assert 'class="verdict pass"' in cells[-2] and cells[-1].startswith(">-</td>"), row


def test_ctrl_c_during_a_plan_over_workers_ends_in_a_complete_report(
    tmp_path: Path, node_ws_url: str
) -> None:
    """SIGINT in the middle of a plan over two workers: exit 130, every population in the report
    with what it measured until then (the subscribers still receiving counted as cut, not
    dropped), and the report valid against the report schema."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import scaled
    from jsonschema import Draft202012Validator

    plan = PLAN.replace('thresholds: ["quote.received >= {received}"]', "load: {{vus: 6, duration: 30s}}")
    path = write_plan(tmp_path, target=node_ws_url, room="interrupted", subscribers=6, quotes=400, plan=plan)
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(path),
            "--workers",
            "2",
            "--report-dir",
            "",
            "--json",
            str(report),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(scaled(4.0))  # workers spawned, the publisher publishing, the subscribers receiving
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=scaled(60))
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(report.read_text())
    schema = json.loads((ROOT / "runner" / "schemas" / "report.schema.json").read_text())
    Draft202012Validator(schema).validate(doc)
    assert doc["interrupted"] is True
    sub = population(doc, "sub")
    assert sub["iterations"]["interrupted"] >= 1
    assert step(doc, "sub/quote")["received"] > 0  # what came before the signal is kept
    assert step(doc, "pub/publish")["count"] > 0
    assert "interrupted" in doc["settings"]["load"]["stop_reason"]


def test_a_population_whose_data_runs_out_ends_alone_and_passes(tmp_path: Path) -> None:
    """``exhausted: stop`` in one population over two workers: that population ends when its
    rows are out everywhere, says so, and is judged on its plan up to there (it passes, and the
    load generator is not blamed); the other runs its whole plan."""
    (tmp_path / "users.csv").write_text("name\nann\nbob\ncid\ndan\neve\nfay\n")
    (tmp_path / "login.yaml").write_text(
        "target: embedded\ndata:\n  users: {file: users.csv, pick: unique, exhausted: stop}\n"
        "connections:\n  c: {url: /echo}\nsteps:\n  - open: c\n"
        '  - write: {connection: c, text: "hi {{ users.name }}"}\n  - read: {connection: c}\n'
        "  - sleep: 200ms\n  - close: c\nload: {vus: 2, duration: 4s}\n"
    )
    (tmp_path / "other.yaml").write_text(
        "target: embedded\nconnections:\n  c: {url: /echo}\nsteps:\n  - open: c\n"
        '  - write: {connection: c, text: "x"}\n  - read: {connection: c}\n  - sleep: 100ms\n'
        "  - close: c\nload: {vus: 2, duration: 4s}\n"
    )
    path = tmp_path / "plan.yaml"
    path.write_text("populations:\n  - {file: login.yaml}\n  - {file: other.yaml}\n")
    code, doc = run_plan(path, "--workers", "2")
    assert code == 0, doc["error"]
    login, other = population(doc, "login"), population(doc, "other")
    assert login["iterations"]["completed"] == 6  # every row once, over both workers
    assert "ran out of unique rows" in login["settings"]["load"]["stop_reason"]
    assert not other["settings"]["load"]["stop_reason"]
    assert other["iterations"]["completed"] > 20
    assert doc["settings"]["load"]["model"] == "plan"
    assert doc["settings"].get("seed") is None  # no population draws its waits: no seed to say


def test_plan_naming_itself_or_an_absent_population_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "self.yaml").write_text("populations:\n  - {file: self.yaml}\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path / "self.yaml")
    assert "plans do not nest" in str(caught.value)
    (tmp_path / "a.yaml").write_text("steps: [{sleep: 1ms}]\nload: {vus: 1, iterations: 1}\n")
    (tmp_path / "p.yaml").write_text(
        "populations:\n  - {file: a.yaml}\n  - {file: gone.yaml}\n"
        "thresholds: [gone/sleep.p99 < 1s, x/sleep.p99 < 1s, a/sleep.p99 < 1s]\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path / "p.yaml")
    text = str(caught.value)
    assert "no scenario file" in text  # gone.yaml's own problem
    assert "names population 'x', which this plan does not have (populations: a, gone)" in text
    assert "did you mean" not in text  # no hint pointing at another population's step
