"""Per-user data (issue 16 §2): ``data: {users: {file, pick, exhausted, secret}}`` read once per
process from CSV, JSON or JSON lines, a row per iteration as ``{{ users.name }}``; sequential,
random (reproducible with --seed) and unique across workers; what happens when unique rows run
out; secret columns masked; every mistake refused with its line.

Which rows an iteration saw is read from the report as a user would: the echo server sends the
name back and a check that expects another text fails with it, one failure group per name."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from runner.cli import main

HEAD = """\
name: per-user data
target: embedded
data:
  users: {file: users.csv, pick: PICK}
connections: {main: {url: /echo, timeout: 5s}}
steps:
  - open: main
  - write: {connection: main, text: "{{ users.name }}"}
  - read: main
    expect: {text: nobody}         # fails, quoting the name the server echoed
  - close: main
"""


def _names(doc: dict) -> Counter[str]:
    """How many iterations saw each name: the failure groups of the read."""
    out: Counter[str] = Counter()
    for f in doc["failures"]:
        out[f["actual"].strip("'\"")] += f["count"]
    return out


def _run(tmp_path: Path, text: str, *args: str, rows: str = "") -> tuple[int, dict, str]:
    (tmp_path / "users.csv").write_text(
        rows or "name,password\nalice,pw-alice-0001\nbob,pw-bob-0002\ncarol,pw-carol-0003\n"
    )
    path = tmp_path / "s.yaml"
    path.write_text(text)
    out = tmp_path / "s.json"
    code = main(["run", str(path), "--json", str(out), "--report-dir", "", *args])
    return code, json.loads(out.read_text()), (tmp_path / "s.json").read_text()


def test_sequential_rows_go_round_in_order(tmp_path: Path) -> None:
    code, doc, _ = _run(tmp_path, HEAD.replace("PICK", "sequential"), "--vus", "1", "--iterations", "6")
    assert code == 1
    assert _names(doc) == {"alice": 2, "bob": 2, "carol": 2}


def test_unique_rows_are_handed_out_once_across_workers_then_the_run_stops(tmp_path: Path) -> None:
    """Ten rows, two workers, users that would run 100 iterations each: every row exactly once,
    then each worker stops saying why; the ten iterations are all that began."""
    rows = "name\n" + "".join(f"user{i:02d}\n" for i in range(10))
    text = HEAD.replace("PICK", "unique").replace("users.csv, pick", "users.csv, pick")
    code, doc, _ = _run(tmp_path, text, "--vus", "4", "--iterations", "100", "--workers", "2", rows=rows)
    assert _names(doc) == {f"user{i:02d}": 1 for i in range(10)}, _names(doc)
    assert doc["iterations"]["started"] == 10 and code == 1  # the reads fail on purpose


def test_exhausted_fail_fails_the_iterations_that_find_no_row(tmp_path: Path) -> None:
    text = HEAD.replace("pick: PICK}", "pick: unique, exhausted: fail}").replace(
        "    expect: {text: nobody}         # fails, quoting the name the server echoed\n", ""
    )
    code, doc, _ = _run(tmp_path, text, "--vus", "1", "--iterations", "5")
    assert code == 1
    assert doc["iterations"] == {"started": 5, "ended": 5, "completed": 3, "failed": 2, "interrupted": 0}
    opened = doc["steps"][0]
    assert opened["failures"] == 2 and opened["errors"][0]["message"] == (
        "data 'users' ran out of unique rows: users.csv has 3, 3 of them handed out by this process"
    )


def test_unique_with_stop_passes_as_a_planned_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = HEAD.replace("PICK", "unique").replace(
        "    expect: {text: nobody}         # fails, quoting the name the server echoed\n", ""
    )
    code, doc, _ = _run(tmp_path, text, "--vus", "2", "--iterations", "10", "--workers", "1")
    assert code == 0, (doc["error"], doc["problems"])
    assert doc["iterations"]["completed"] == 3
    assert "ran out of unique rows" in capsys.readouterr().out


def test_random_rows_repeat_with_the_seed(tmp_path: Path) -> None:
    text = HEAD.replace("PICK", "random")
    _, first, _ = _run(tmp_path, text, "--vus", "3", "--iterations", "20", "--seed", "7")
    _, again, _ = _run(tmp_path, text, "--vus", "3", "--iterations", "20", "--seed", "7")
    _, other, _ = _run(tmp_path, text, "--vus", "3", "--iterations", "20", "--seed", "8")
    assert _names(first) == _names(again) and sum(_names(first).values()) == 60
    assert _names(first) != _names(other) and len(_names(first)) == 3


def test_json_and_json_lines_files(tmp_path: Path) -> None:
    for name, content in (
        ("users.json", '[{"name": "ann", "password": "x"}, {"name": "ben", "password": "y"}]'),
        ("users.jsonl", '{"name": "ann", "password": "x"}\n\n{"name": "ben", "password": "y"}\n'),
    ):
        (tmp_path / name).write_text(content)
        text = HEAD.replace("users.csv", name).replace("PICK", "sequential")
        _, doc, _ = _run(tmp_path, text, "--vus", "1", "--iterations", "4")
        assert _names(doc) == {"ann": 2, "ben": 2}, name


def test_secret_columns_are_masked_in_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server echoes each user's password into a failed check: no output holds any."""
    text = HEAD.replace("pick: PICK}", "pick: sequential, secret: [password]}").replace(
        "users.name", "users.password"
    )
    code, doc, raw = _run(tmp_path, text, "--vus", "1", "--iterations", "3", "-v")
    out = capsys.readouterr()
    assert code == 1 and doc["failures"]
    for leaked in ("pw-alice-0001", "pw-bob-0002", "pw-carol-0003", "pw-alice"):
        assert leaked not in raw and leaked not in out.out and leaked not in out.err


_ROWS_3 = "name,password\nalice,pw,extra\n"
MISTAKES = {
    "column": (
        ("users.name", "users.nmae"),
        "",
        "s.yaml:8:37: steps[1].write.text: 'users.nmae': users.csv has no column 'nmae', "
        "did you mean 'users.name'?",
    ),
    "row": ((), _ROWS_3, "s.yaml:4:17: data.users.file: users.csv:2: 3 values, the header has 2"),
    "empty": ((), "name,password\n", "s.yaml:4:17: data.users.file: 'users.csv' has no rows"),
    "missing": (("users.csv", "nope.csv"), "", "s.yaml:4:17: data.users.file: file 'nope.csv' not found"),
    "exhausted": (
        ("pick: PICK}", "pick: random, exhausted: fail}"),
        "",
        "s.yaml:4:42: data.users.exhausted: 'exhausted' says what happens when unique rows run out: "
        "it needs pick: unique",
    ),
    "secret": (
        ("pick: PICK}", "pick: unique, secret: [passwrd]}"),
        "",
        "s.yaml:4:51: data.users.secret[0]: 'users.csv' has no column 'passwrd', did you mean 'password'?",
    ),
    "pick": (
        ("pick: PICK}", "pick: uniqe}"),
        "",
        "s.yaml:4:34: data.users.pick: unknown value 'uniqe', did you mean 'unique'?",
    ),
}


@pytest.mark.parametrize(("change", "rows", "message"), MISTAKES.values(), ids=MISTAKES.keys())
def test_data_mistakes_are_refused_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, ...], rows: str, message: str
) -> None:
    text = HEAD
    if change:
        text = text.replace(change[0], change[1])
    text = text.replace("PICK", "sequential")
    (tmp_path / "users.csv").write_text(rows or "name,password\nalice,pw-alice-0001\n")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert message in captured.out + captured.err, captured


def test_a_file_without_its_header_line_does_not_show_its_first_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV whose first line is a user, not the column names: the error about the missing
    secret column must not list that "header" (the first user's password)."""
    (tmp_path / "users.csv").write_text("alice,Sup3rS3cretPassw0rdAlice\nbob,An0therS3cretPassw0rdBob\n")
    text = HEAD.replace("pick: PICK}", "pick: sequential, secret: [password]}")
    (tmp_path / "s.yaml").write_text(text)
    assert main(["validate", str(tmp_path / "s.yaml")]) == 2
    out = capsys.readouterr()
    assert "has no column 'password' (its first line must name the columns)" in out.out
    assert "Sup3rS3cret" not in out.out + out.err and "3rS3cretPa" not in out.out + out.err


def test_data_files_with_a_byte_order_mark_or_line_separators_read(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark; a JSON string may hold U+2028."""
    (tmp_path / "users.jsonl").write_text('{"name": "ann\u2028x"}\n{"name": "ben"}\n')
    text = HEAD.replace("users.csv", "users.jsonl").replace("PICK", "sequential")
    _, doc, _ = _run(tmp_path, text, "--vus", "1", "--iterations", "2")
    assert sum(_names(doc).values()) == 2
    bom = "\ufeffname,password\nalice,a\nbob,b\n"
    _, doc, _ = _run(
        tmp_path, HEAD.replace("PICK", "sequential"), "--vus", "1", "--iterations", "2", rows=bom
    )
    assert _names(doc) == {"alice": 1, "bob": 1}


def test_a_deeply_nested_json_file_is_a_problem_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "users.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "s.yaml").write_text(HEAD.replace("users.csv", "users.json").replace("PICK", "sequential"))
    assert main(["validate", str(tmp_path / "s.yaml")]) == 2
    out = capsys.readouterr()
    assert "'users.json': nested too deeply to be rows" in out.out and "Traceback" not in out.err
    assert "unknown variable 'users'" not in out.out  # the set is declared, though it failed
