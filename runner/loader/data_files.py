"""The ``data:`` section: per-user data files read once, checked, and the columns templates use.

A set is a CSV file with a header line, a JSON array of objects, or JSON lines (one object per
line), chosen by the file's extension. Every problem names the scenario's line (the set's
``file:``) and, for a row, the data file's own line: ``users.csv:14: 3 values, the header has 2``.
A template that reads a column the set does not have (``{{ users.nmae }}``) is a problem at its
own line with a did-you-mean.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from runner.loader.document import Document
from runner.scenario import model as m
from runner.scenario.source import Path
from runner.scenario.validation import closest

__all__ = ["check_columns", "data_sets"]

#: ``{{ NAME.COLUMN`` in any string of the file: what ``check_columns`` looks for.
_USE_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z0-9_]+)")


def data_sets(doc: Document, raw: dict[str, Any], taken: set[str]) -> dict[str, m.DataSet]:
    """Each set of ``data:`` read and checked; ``taken``: names already in use (variables,
    built-ins), which a set may not shadow."""
    sets: dict[str, m.DataSet] = {}
    for name, spec in raw.items():
        path: Path = ("data", name)
        if name in taken:
            doc.problem(
                path, f"data set '{name}' has the name of a variable or built-in; choose another", key=True
            )
            continue
        built = _data_set(doc, str(name), spec, path)
        if built is not None:
            sets[str(name)] = built
    return sets


def _data_set(doc: Document, name: str, spec: dict[str, Any], path: Path) -> m.DataSet | None:
    rel = str(spec["file"])
    text = doc.read_file(rel, (*path, "file"))
    if text is None:
        return None
    assert isinstance(text, str)
    text = text.removeprefix("\ufeff")  # a byte-order mark (Excel's "CSV UTF-8")
    where = (*path, "file")
    suffix = rel.lower().rsplit(".", 1)[-1] if "." in rel else ""
    if suffix == "csv":
        parsed = _csv(doc, rel, text, where)
    elif suffix == "json":
        parsed = _json_array(doc, rel, text, where)
    elif suffix in ("jsonl", "ndjson"):
        parsed = _json_lines(doc, rel, text, where)
    else:
        doc.problem(
            where, f"'{rel}': a data file is .csv (with a header), .json (an array of objects) or .jsonl"
        )
        return None
    if parsed is None:
        return None
    columns, rows = parsed
    if not rows:
        doc.problem(where, f"'{rel}' has no rows")
        return None
    secret = frozenset(str(c) for c in spec.get("secret") or ())
    for i, wanted in enumerate(spec.get("secret") or ()):
        if wanted not in columns:
            # The columns are not listed: a file without its header line would show its first
            # row, secrets included, as "columns".
            hint = closest(wanted, columns)
            extra = f", did you mean '{hint}'?" if hint else " (its first line must name the columns)"
            doc.problem((*path, "secret", i), f"'{rel}' has no column '{wanted}'{extra}")
    pick = spec.get("pick", "sequential")
    if "exhausted" in spec and pick != "unique":
        doc.problem(
            (*path, "exhausted"),
            "'exhausted' says what happens when unique rows run out: it needs pick: unique",
            key=True,
        )
    line, column = doc.source.position(path)
    return m.DataSet(
        name=name,
        file=rel,
        columns=columns,
        rows=rows,
        pick=pick,
        exhausted=spec.get("exhausted", "stop"),
        secret=secret,
        location=m.Location(doc.source.file, line, column),
    )


def _csv(
    doc: Document, rel: str, text: str, where: Path
) -> tuple[tuple[str, ...], tuple[tuple[object, ...], ...]] | None:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            doc.problem(where, f"'{rel}' has no header line (the first line names the columns)")
            return None
        columns = tuple(h.strip() for h in header)
        bad = next((c for c in columns if not re.fullmatch(r"[A-Za-z0-9_]+", c)), None)
        if bad is not None:
            doc.problem(
                where, f"'{rel}': column '{bad}' is not a name templates can use (letters, digits, _)"
            )
            return None
        if len(set(columns)) < len(columns):
            doc.problem(where, f"'{rel}': a column is named twice in the header")
            return None
        rows: list[tuple[object, ...]] = []
        for values in reader:
            if not values:
                continue  # a blank line
            if len(values) != len(columns):
                doc.problem(
                    where, f"{rel}:{reader.line_num}: {len(values)} values, the header has {len(columns)}"
                )
                return None
            rows.append(tuple(values))
    except csv.Error as exc:
        doc.problem(where, f"{rel}:{reader.line_num}: {exc}")
        return None
    return columns, tuple(rows)


def _objects(
    doc: Document, rel: str, items: Iterator[tuple[int, object]], where: Path
) -> tuple[tuple[str, ...], tuple[tuple[object, ...], ...]] | None:
    """Rows from JSON objects that all have the first one's keys (``label`` says where each is)."""
    columns: tuple[str, ...] = ()
    rows: list[tuple[object, ...]] = []
    for line, item in items:
        if not isinstance(item, dict):
            doc.problem(
                where, f'{rel}:{line}: a row must be an object ({{"name": ...}}), got {type(item).__name__}'
            )
            return None
        if not columns:
            columns = tuple(item)
        elif set(item) != set(columns):
            missing = sorted(set(columns) - set(item)) or sorted(set(item) - set(columns))
            doc.problem(where, f"{rel}:{line}: its keys differ from the first row's ({', '.join(missing)})")
            return None
        rows.append(tuple(item[c] for c in columns))
    return columns, tuple(rows)


def _json_array(
    doc: Document, rel: str, text: str, where: Path
) -> tuple[tuple[str, ...], tuple[tuple[object, ...], ...]] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        doc.problem(where, f"{rel}:{exc.lineno}: not JSON: {exc.msg}")
        return None
    except RecursionError:
        doc.problem(where, f"'{rel}': nested too deeply to be rows")
        return None
    if not isinstance(value, list):
        doc.problem(where, f"'{rel}' must hold a JSON array of objects")
        return None
    return _objects(doc, rel, ((i + 1, v) for i, v in enumerate(value)), where)


def _json_lines(
    doc: Document, rel: str, text: str, where: Path
) -> tuple[tuple[str, ...], tuple[tuple[object, ...], ...]] | None:
    parsed: list[tuple[int, object]] = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may be in a string
        if not line.strip():
            continue
        try:
            parsed.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            doc.problem(where, f"{rel}:{number}: not JSON: {exc.msg}")
            return None
        except RecursionError:
            doc.problem(where, f"{rel}:{number}: nested too deeply to be a row")
            return None
    return _objects(doc, rel, iter(parsed), where)


def check_columns(doc: Document, data: dict[str, Any], sets: dict[str, m.DataSet]) -> None:
    """Every ``{{ SET.COLUMN }}`` in the file's strings names a column of its set."""
    if not sets:
        return
    todo: list[tuple[object, Path]] = [
        (data.get("steps"), ("steps",)),
        (data.get("connections"), ("connections",)),
    ]
    while todo:
        value, path = todo.pop()
        if isinstance(value, dict):
            todo.extend((v, (*path, k)) for k, v in value.items())
        elif isinstance(value, list):
            todo.extend((v, (*path, i)) for i, v in enumerate(value))
        elif isinstance(value, str) and "{{" in value:
            for found in _USE_RE.finditer(value):
                name, column = found.group(1), found.group(2)
                dataset = sets.get(name)
                if dataset is not None and column not in dataset.columns:
                    hint = closest(column, dataset.columns)
                    listed = "" if dataset.secret else f" (columns: {', '.join(dataset.columns)})"
                    extra = f", did you mean '{name}.{hint}'?" if hint else listed
                    doc.problem(path, f"'{name}.{column}': {dataset.file} has no column '{column}'{extra}")
