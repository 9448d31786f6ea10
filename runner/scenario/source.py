"""Safe YAML loading that remembers where every value came from.

PyYAML composes a node tree (safe loader, no custom tags); we then build plain Python values
ourselves so that each value's start mark lands in a side table keyed by its path tuple
(``("steps", 2, "expect")``). That keeps the data plain (no wrapper types leak into the model) and
lets any later stage point at a line. Building it ourselves also lets us refuse what a user did
not mean (duplicate keys) and what an attacker might send (alias bombs, extreme nesting) with a
``Problem`` instead of a hang or a ``RecursionError``.
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import (
    CollectionEndEvent,
    MappingStartEvent,
    NodeEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from runner.errors import Problem, ScenarioError, WsloadError

__all__ = [
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_VALUES",
    "Path",
    "SourceMap",
    "format_path",
    "parse_yaml",
    "read_limited",
    "read_source",
]

Path = tuple[str | int, ...]

#: Deeper nesting than this is refused (a scenario needs perhaps 10 levels).
MAX_DEPTH = 64
#: More values than this is refused: in the file as written (counted while parsing, before any
#: tree is built, so a 15 MiB file of small values is refused after its first 200,000 in a
#: fraction of a second) and after alias expansion (billion-laughs guard). Mapping keys are not
#: counted; a scenario needs a few hundred values.
MAX_VALUES = 200_000
#: A scenario file larger than this is refused; the limit holds while reading, so an endless
#: stream (``/dev/zero``, a FIFO) costs at most this much memory.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Problems after this many are listed without the lines around them.
MAX_EXCERPTS = 100
#: Texts up to this size are split into lines for excerpts; larger ones are searched (see ``_line``).
_SPLIT_LINES_UP_TO = 1 << 20
#: YAML errors in texts up to this size are worded by the pure-Python parser (see ``_compose``).
_PYTHON_WORDING_UP_TO = 1 << 20
_CHUNK = 1 << 16
#: More text than this in all scalars after alias expansion is refused: a few aliases of one long
#: string stay under MAX_VALUES yet would expand to gigabytes (a file itself is at most 16 MiB).
MAX_CHARS = 32 * 1024 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
#: Count values with libyaml's C parser before the pure-Python parse (which keeps positions and
#: our error texts): the C parser gets to value 200,001 about 50 times sooner. Off, or without
#: libyaml, the composer's own count holds the same bound, only later.
USE_LIBYAML = bool(getattr(yaml, "__with_libyaml__", False))
_TOO_MANY_VALUES = (
    f"more than {MAX_VALUES:,} values in the file (a scenario needs a few hundred); is this a data file?"
)


def read_limited(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """At most ``limit`` bytes of the file at ``path``, or None when it holds more.

    The bound holds while reading: a regular file is judged by its size without reading it, and
    anything else (``/dev/zero``, a FIFO, ``/proc`` files) is read up to ``limit + 1`` bytes only.
    ``OSError`` (missing file, a directory, no permission) is left to the caller.
    """
    with open(path, "rb") as fh:
        info = os.fstat(fh.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(21, "Is a directory", os.fspath(path))
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            return None
        data = fh.read(limit + 1)
    return None if len(data) > limit else data


def read_source(path: str | os.PathLike[str], file: str | None = None) -> str:
    """The text of the scenario file at ``path`` (UTF-8, an optional BOM dropped).

    Every way it cannot be a scenario is a ``ScenarioError`` at ``FILE:1:1`` (``file`` is the name
    shown, default ``path``): missing, a directory, unreadable, not UTF-8, or more than
    ``MAX_FILE_BYTES``, which is refused after reading at most one byte more than that.
    """
    shown = os.fspath(path) if file is None else file
    try:
        data = read_limited(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise ScenarioError([Problem(shown, 1, 1, "", "no such file")]) from None
    except IsADirectoryError:
        raise ScenarioError([Problem(shown, 1, 1, "", "is a directory, not a scenario file")]) from None
    except OSError as exc:
        raise ScenarioError([Problem(shown, 1, 1, "", f"cannot read: {exc.strerror or exc}")]) from None
    if data is None:
        message = f"larger than {MAX_FILE_BYTES >> 20} MiB; is this a scenario file?"
        raise ScenarioError([Problem(shown, 1, 1, "", message)])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScenarioError([Problem(shown, 1, 1, "", f"not UTF-8 text ({exc.reason})")]) from None


def format_path(path: Iterable[str | int]) -> str:
    """``("steps", 2, "expect")`` -> ``steps[2].expect``, the form every message uses."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class SourceMap:
    """The file's text and the 1-based (line, column) of each value and each mapping key."""

    file: str
    text: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    #: How many excerpts were made; past ``MAX_EXCERPTS`` problems come without one.
    excerpts: int = field(default=0, init=False, repr=False, compare=False)
    _lines: list[str] | None = field(default=None, init=False, repr=False, compare=False)
    _chunk_breaks: list[int] | None = field(default=None, init=False, repr=False, compare=False)

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` is (its key when ``key``), falling back to the nearest known parent."""
        # A block mapping or list starts on the line after its key: point at the key instead.
        if not key and path in self.keys and self.values.get(path, (0, 0))[0] != self.keys[path][0]:
            return self.keys[path]
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        probe = tuple(path)
        while probe:
            probe = probe[:-1]
            if probe in self.values:
                return self.values[probe]
        return (1, 1)

    def _line_count(self) -> int:
        if len(self.text) <= _SPLIT_LINES_UP_TO:
            if self._lines is None:
                self._lines = self.text.splitlines()
            return len(self._lines)
        return self.text.count("\n") + (0 if self.text.endswith("\n") else 1)

    def _line(self, n: int) -> str:
        """Line ``n`` (1-based, within ``_line_count``).

        Up to ``_SPLIT_LINES_UP_TO`` characters this is ``splitlines()`` (every break YAML knows);
        a larger text is not split (two million short lines cost 150 MB as strings): its line is
        found through the newline count of each 64 KiB chunk, made once.
        """
        if self._lines is not None:
            return self._lines[n - 1]
        text = self.text
        if self._chunk_breaks is None:
            self._chunk_breaks = [text.count("\n", i, i + _CHUNK) for i in range(0, len(text), _CHUNK)]
        chunk, before = 0, 0  # the chunk holding the start of line n, and the breaks before it
        while chunk < len(self._chunk_breaks) - 1 and before + self._chunk_breaks[chunk] < n - 1:
            before += self._chunk_breaks[chunk]
            chunk += 1
        start = chunk * _CHUNK
        for _ in range(n - 1 - before):
            start = text.index("\n", start) + 1
        end = text.find("\n", start)
        return text[start : end if end >= 0 else len(text)].rstrip("\r")

    def excerpt(self, line: int, column: int) -> str:
        """The line before, the line itself and a caret under ``column``, numbered like an editor.

        Only the first ``MAX_EXCERPTS`` problems get one: a hostile file can have a problem on each
        of 100,000 lines, and each excerpt has its cost.
        """
        if self.excerpts >= MAX_EXCERPTS:
            return ""
        self.excerpts += 1
        count = self._line_count()
        if not count or not self.text:
            return ""
        line = max(1, min(line, count))
        first = max(1, line - 1)
        width = len(str(line))
        # Long lines (minified JSON, alias bombs) are cut to a 100-column window around the caret.
        start = max(0, column - 60) if column > 80 else 0
        shown = [
            f"  {n:>{width}} | {self._line(n).expandtabs(1)[start : start + 100]}"
            for n in range(first, line + 1)
        ]
        shown.append(f"  {'':>{width}} | {' ' * max(0, column - 1 - start)}^")
        return "\n".join(shown)

    def problem(self, path: Path, message: str, *, key: bool = False) -> Problem:
        """A ``Problem`` at ``path`` (its key when ``key``) with an excerpt of the source."""
        line, column = self.position(path, key=key)
        return Problem(self.file, line, column, format_path(path), message, self.excerpt(line, column))

    def at(self, line: int, column: int, message: str, path: Path = ()) -> Problem:
        """A ``Problem`` at an explicit position."""
        return Problem(self.file, line, column, format_path(path), message, self.excerpt(line, column))


class _Limits:
    """Refuses nesting deeper than ``MAX_DEPTH`` and more than ``MAX_VALUES`` values while composing.

    PyYAML composes recursively, so a document of ten thousand ``[`` would otherwise end in a
    ``RecursionError``; counting here stops it early. Each composed node costs about half a
    kilobyte (the node and its two marks), so the value count also bounds memory before any tree
    exists. Mixed into both composers below.
    """

    _depth = 0
    _values = 0
    _top_key: str | None = None
    max_values = MAX_VALUES  # (set per parse by ``_compose``)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise yaml.MarkedYAMLError(
                    problem=f"nesting deeper than {MAX_DEPTH} levels", problem_mark=mark
                )
            if parent is None or index is not None:  # a value, not a mapping key
                if self._depth == 2 and isinstance(index, ScalarNode):
                    self._top_key = str(index.value)  # named in the problem, as the C count does
                self._values += 1
                if self._values > self.max_values:
                    mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                    where: Path = (self._top_key,) if self._top_key is not None and self._depth > 1 else ()
                    raise _TooManyValues(mark.line + 1, mark.column + 1, where)
            return super().compose_node(parent, index)  # type: ignore[misc, no-any-return]
        finally:
            self._depth -= 1


class _Loader(Protocol):
    """What the builder needs of either composer once the tree is composed."""

    def construct_object(self, node: Node, deep: bool = False) -> object: ...

    def dispose(self) -> None: ...


class _Composer(_Limits, yaml.SafeLoader):
    """The pure-Python parser and composer: PyYAML's own error texts, about 1 MB/s."""


if USE_LIBYAML:
    from yaml._yaml import CParser  # type: ignore[import-not-found, unused-ignore]

    class _CComposer(_Limits, Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc, unused-ignore]
        """libyaml's C scanner and parser under PyYAML's Python composer (so ``_Limits`` applies):
        the same nodes and marks, 5 to 70 times sooner than the pure-Python parser."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


class _TooManyValues(WsloadError):
    """More than ``MAX_VALUES`` values in the file as written, at a 1-based line and column."""

    def __init__(self, line: int, column: int, path: Path) -> None:
        self.line = line
        self.column = column
        self.path = path


def _count_values(text: str, max_values: int) -> None:
    """Raise ``_TooManyValues`` at the first value past ``max_values``, counted on libyaml's event
    stream (C, no tree, constant memory). Anything libyaml cannot parse ends the count quietly:
    the pure-Python parse that follows reports it in our words (and counts again)."""
    try:
        parser = yaml.CSafeLoader(text)
    except ValueError:  # a lone surrogate in text given by a caller: the Python reader words it
        return
    #: One entry per open collection: [is a mapping, the next node in it is a key].
    stack: list[list[bool]] = []
    top_key: str | None = None
    count = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, CollectionEndEvent):
                stack.pop()
                continue
            if not isinstance(event, NodeEvent):
                continue
            is_key = False
            if stack and stack[-1][0]:
                is_key = stack[-1][1]
                stack[-1][1] = not is_key
            if is_key:
                if len(stack) == 1 and isinstance(getattr(event, "value", None), str):
                    top_key = event.value  # type: ignore[attr-defined]
            else:
                count += 1
                if count > max_values:
                    mark = event.start_mark
                    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
                    where: Path = (top_key,) if top_key is not None and stack[0][0] else ()
                    raise _TooManyValues(line, column, where)
            if isinstance(event, MappingStartEvent):
                stack.append([True, True])
            elif isinstance(event, SequenceStartEvent):
                stack.append([False, False])
            # An alias counts once here; the builder counts what it expands to.
    except yaml.YAMLError:
        return
    finally:
        parser.dispose()


class _Builder:
    """Turns a composed node tree into plain values, recording marks and problems."""

    def __init__(self, loader: _Loader, source: SourceMap, max_values: int) -> None:
        self.loader = loader
        self.source = source
        self.max_values = max_values
        self.problems: list[Problem] = []
        self.count = 0
        self.chars = 0

    def build(self, node: Node, path: Path, depth: int = 0) -> object:
        self.count += 1
        if self.count > self.max_values or depth > MAX_DEPTH:
            raise _TooLarge(path)
        mark = node.start_mark
        self.source.values.setdefault(path, (mark.line + 1, mark.column + 1))
        if isinstance(node, ScalarNode):
            self.chars += len(node.value)
            if self.chars > MAX_CHARS:
                raise _TooLarge(path)
            if node.tag == _TIMESTAMP_TAG:
                return node.value  # keep dates as the text the user wrote
            try:
                value = self.loader.construct_object(node, deep=True)
            except (ValueError, OverflowError) as exc:  # e.g. an integer of 5000 digits
                reason = str(exc).split(";")[0]
                self.problems.append(
                    self.source.at(mark.line + 1, mark.column + 1, f"value cannot be read: {reason}", path)
                )
                return None
            if isinstance(value, datetime.date | bytes | set):
                return node.value
            return value
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        return None  # pragma: no cover - PyYAML has no other node kinds

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, object]:
        result: dict[str, object] = {}
        seen: dict[str, int] = {}
        merged: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.update(self._merge(value_node, path, depth))
                continue
            if not isinstance(key_node, ScalarNode):
                m = key_node.start_mark
                self.problems.append(
                    self.source.at(
                        m.line + 1, m.column + 1, "a key must be a plain word, not a list or mapping", path
                    )
                )
                continue
            key = str(key_node.value)
            kmark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                self.problems.append(
                    self.source.at(
                        *kmark, f"duplicate key '{key}' (first defined on line {seen[key]})", (*path, key)
                    )
                )
                continue
            seen[key] = kmark[0]
            self.source.keys[(*path, key)] = kmark
            result[key] = self.build(value_node, (*path, key), depth + 1)
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def _merge(self, node: Node, path: Path, depth: int) -> dict[str, object]:
        """``<<: *base`` or ``<<: [*a, *b]``: earlier mappings win, explicit keys win over all."""
        nodes: list[Node] = node.value if isinstance(node, SequenceNode) else [node]
        out: dict[str, object] = {}
        for item in nodes:
            if not isinstance(item, MappingNode):
                m = item.start_mark
                self.problems.append(
                    self.source.at(m.line + 1, m.column + 1, "'<<' merges only mappings", path)
                )
                continue
            for key, value in self._mapping(item, path, depth).items():
                out.setdefault(key, value)
        return out


class _TooLarge(WsloadError):
    """Raised deep inside the build; carries the path being built when a limit was passed."""

    def __init__(self, path: Path) -> None:
        self.path = path


def _yaml_problem(source: SourceMap, exc: yaml.YAMLError) -> Problem:
    """A YAML syntax error in our ``FILE:LINE:COL: message`` form, tabs explained."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}"
    if context:
        message += f" ({context})"
    lines = source.text.splitlines()
    text_line = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in text_line or "'\\t'" in problem:
        message += "; YAML does not allow tabs for indentation, use spaces"
    elif "mapping values are not allowed" in problem or "did not find expected key" in problem:
        message += "; check the indentation of this line and the one above"
    return source.at(line, column, message)


def parse_yaml(
    text: str, file: str, *, max_values: int = MAX_VALUES, libyaml: bool = USE_LIBYAML
) -> tuple[object, SourceMap]:
    """Parse one YAML document into plain values and its ``SourceMap``.

    Raises ``ScenarioError`` for syntax errors, duplicate keys, several documents, alias bombs,
    more than ``max_values`` values and extreme nesting, each as a ``Problem`` with a position.
    ``libyaml=False`` parses with the pure-Python parser even where libyaml is present.
    """
    source = SourceMap(file, text)
    libyaml = libyaml and USE_LIBYAML
    try:
        if libyaml:
            _count_values(text, max_values)
        loader, node = _compose(text, libyaml, max_values)
        try:
            if node is None:
                raise ScenarioError([source.at(1, 1, "the file is empty; a scenario needs at least 'steps'")])
            builder = _Builder(loader, source, max_values)
            data = builder.build(node, ())
        finally:
            loader.dispose()
    except _TooManyValues as many:
        raise ScenarioError([source.at(many.line, many.column, _TOO_MANY_VALUES, many.path)]) from None
    except _TooLarge as big:
        message = (
            f"document too large or too deep: more than {max_values} values, {MAX_CHARS >> 20} MiB "
            f"of text or {MAX_DEPTH} levels after expanding aliases (an alias bomb?)"
        )
        raise ScenarioError([source.problem(big.path[:1], message, key=bool(big.path))]) from None
    except yaml.reader.ReaderError as exc:
        raise ScenarioError([_reader_problem(source, exc)]) from None
    except yaml.composer.ComposerError as exc:
        if "expected a single document" not in str(exc):
            raise ScenarioError([_yaml_problem(source, exc)]) from None
        message = "a scenario file holds one YAML document; remove the second '---'"
        raise ScenarioError([source.at(_line(exc), 1, message)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([_yaml_problem(source, exc)]) from None
    except RecursionError:
        raise ScenarioError([source.at(1, 1, "document nested too deeply")]) from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a float PyYAML cannot convert
        raise ScenarioError([source.at(1, 1, f"YAML value error: {exc}")]) from None
    if builder.problems:
        raise ScenarioError(builder.problems)
    return data, source


def _compose(text: str, libyaml: bool, max_values: int) -> tuple[_Loader, Node | None]:
    """The node tree of the one document in ``text``, and the loader that constructs its scalars.

    libyaml's parser first, when present. A text it refuses is parsed again by the pure-Python
    parser, whose error texts are the ones users know and tests check; above
    ``_PYTHON_WORDING_UP_TO`` characters (where that would take seconds) libyaml's own error stands.
    """
    if libyaml:
        try:
            fast = _CComposer(text)
        except (ValueError, yaml.YAMLError):  # e.g. a lone surrogate in text given by a caller
            fast = None
        if fast is not None:
            fast.max_values = max_values
            try:
                return fast, fast.get_single_node()
            except yaml.YAMLError:
                fast.dispose()
                if len(text) > _PYTHON_WORDING_UP_TO:
                    raise
            except BaseException:
                fast.dispose()
                raise
    loader = _Composer(text)
    loader.max_values = max_values
    try:
        return loader, loader.get_single_node()
    except BaseException:
        loader.dispose()
        raise


def _reader_problem(source: SourceMap, exc: yaml.reader.ReaderError) -> Problem:
    """A character YAML does not allow, at its line and column."""
    position = exc.position if isinstance(exc.position, int) else 0
    if exc.encoding == "?":  # from libyaml: a byte offset into the UTF-8 text
        before = source.text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "replace")
        position = len(before)
    before = source.text[:position]
    line, column = before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
    what = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "a character"
    return source.at(line, column, f"YAML syntax error: {what} is not allowed in YAML text")


def _line(exc: yaml.YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else 1
