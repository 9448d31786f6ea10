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
from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner.errors import Problem, ScenarioError

__all__ = ["MAX_CHARS", "MAX_DEPTH", "MAX_VALUES", "Path", "SourceMap", "format_path", "parse_yaml"]

Path = tuple[str | int, ...]

#: Deeper nesting than this is refused (a scenario needs perhaps 10 levels).
MAX_DEPTH = 64
#: More values than this after alias expansion is refused (billion-laughs guard).
MAX_VALUES = 200_000
#: More text than this in all scalars after alias expansion is refused: a few aliases of one long
#: string stay under MAX_VALUES yet would expand to gigabytes (a file itself is at most 16 MiB).
MAX_CHARS = 32 * 1024 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


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

    def excerpt(self, line: int, column: int) -> str:
        """The line before, the line itself and a caret under ``column``, numbered like an editor."""
        lines = self.text.splitlines()
        if not lines:
            return ""
        line = max(1, min(line, len(lines)))
        first = max(1, line - 1)
        width = len(str(line))
        # Long lines (minified JSON, alias bombs) are cut to a 100-column window around the caret.
        start = max(0, column - 60) if column > 80 else 0
        shown = [
            f"  {n:>{width}} | {lines[n - 1].expandtabs(1)[start : start + 100]}"
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


class _Composer(yaml.SafeLoader):
    """A safe loader that refuses nesting deeper than ``MAX_DEPTH`` while composing.

    PyYAML composes recursively, so a document of ten thousand ``[`` would otherwise end in a
    ``RecursionError``; counting here stops it early.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.MarkedYAMLError(
                    problem=f"nesting deeper than {MAX_DEPTH} levels", problem_mark=mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    """Turns a composed node tree into plain values, recording marks and problems."""

    def __init__(self, loader: _Composer, source: SourceMap) -> None:
        self.loader = loader
        self.source = source
        self.problems: list[Problem] = []
        self.count = 0
        self.chars = 0

    def build(self, node: Node, path: Path, depth: int = 0) -> object:
        self.count += 1
        if self.count > MAX_VALUES or depth > MAX_DEPTH:
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


class _TooLarge(Exception):
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


def parse_yaml(text: str, file: str) -> tuple[object, SourceMap]:
    """Parse one YAML document into plain values and its ``SourceMap``.

    Raises ``ScenarioError`` for syntax errors, duplicate keys, several documents, alias bombs and
    extreme nesting, each as a ``Problem`` with a position.
    """
    source = SourceMap(file, text)
    try:
        loader = _Composer(text)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        message = f"YAML syntax error: character #x{exc.character:04x} is not allowed in YAML text"
        raise ScenarioError([source.at(line, column, message)]) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            if "expected a single document" in str(exc):
                message = "a scenario file holds one YAML document; remove the second '---'"
                raise ScenarioError([source.at(_line(exc), 1, message)]) from None
            raise
        if node is None:
            raise ScenarioError([source.at(1, 1, "the file is empty; a scenario needs at least 'steps'")])
        builder = _Builder(loader, source)
        try:
            data = builder.build(node, ())
        except _TooLarge as big:
            message = (
                f"document too large or too deep: more than {MAX_VALUES} values, {MAX_CHARS >> 20} MiB "
                f"of text or {MAX_DEPTH} levels after expanding aliases (an alias bomb?)"
            )
            raise ScenarioError([source.problem(big.path[:1], message, key=bool(big.path))]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([_yaml_problem(source, exc)]) from None
    except RecursionError:
        raise ScenarioError([source.at(1, 1, "document nested too deeply")]) from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a float PyYAML cannot convert
        raise ScenarioError([source.at(1, 1, f"YAML value error: {exc}")]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise ScenarioError(builder.problems)
    return data, source


def _line(exc: yaml.YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else 1
