"""The scenario file as its parts are built: where each value stands, every problem found so far,
and the checks all parts share (durations, sizes, templates and the names they read, files the
scenario names, PEM text).

``Document`` is the small context the part builders (``connections``, ``content``,
``load_section``) are functions of, and that the step walk (``builder``) owns: a part reports a
problem at a YAML path and goes on, so the user sees every mistake at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any, TypeVar

from runner.errors import Problem
from runner.scenario import model as m
from runner.scenario.model import MAX_DURATION_S, MAX_PAYLOAD_BYTES
from runner.scenario.source import Path, SourceMap, read_limited
from runner.scenario.templates import JsonTemplate, Template, TemplateError
from runner.scenario.units import UnitError, parse_bound, parse_duration, parse_size
from runner.scenario.validation import closest

__all__ = ["BUILTIN_VARIABLES", "Document"]

#: Names every template may use without declaring them.
BUILTIN_VARIABLES = frozenset({"vu", "iteration"})

_PEM_MARK = "-----BEGIN "

T = TypeVar("T")


class Document:
    """One scenario file being built: its positions, its problems, the names a template may read
    at the current point of the walk, and the secrets found (a PEM key is one)."""

    def __init__(
        self,
        source: SourceMap,
        base_dir: FsPath,
        secrets: set[str],
        *,
        known: set[str],
        all_captures: set[str],
        secret_names: set[str],
        tolerant: bool = False,
    ) -> None:
        self.source = source
        self.base_dir = base_dir  # files the scenario names resolve against it
        self.secrets = secrets
        #: True: the schema rejected the document; check what still stands (see ``tolerating``)
        self.tolerant = tolerant
        self.problems: list[Problem] = []
        #: Names a template may read here: variables, built-ins, captures made so far, the
        #: indexes of the enclosing blocks.
        self.known = known
        #: Every capture anywhere in the file (to say "used before the read that captures it").
        self.all_captures = all_captures
        #: Variables and captures whose values are secret (a capture of one is registered when made).
        self.secret_names = secret_names
        self.block_indexes: dict[str, int] = {}  # repeat ``index`` names -> the block's line
        self.regex_total = 0  # the size of the file's regular expressions so far (``content``)

    def tolerating(self, build: Callable[..., T], *args: Any) -> T | None:
        """``build(*args)``; on a document the schema rejected (``tolerant``), a part that trips
        the builder is skipped so the other parts still get their semantic checks."""
        if not self.tolerant:
            return build(*args)
        try:
            return build(*args)
        except Exception:  # the schema problems already describe the broken part
            return None

    def problem(self, path: Path, message: str, *, key: bool = False) -> None:
        """Record a problem at ``path`` (at its key rather than its value with ``key``)."""
        self.problems.append(self.source.problem(path, message, key=key))

    def location(self, path: Path) -> m.Location:
        """Where ``path`` stands in the file, for the model (reports and errors quote it)."""
        line, column = self.source.position(path)
        return m.Location(self.source.file, line, column)

    def duration(self, value: object, path: Path, *, bound: bool = False) -> float:
        """Seconds; an unparsable value is a problem (0.0), and so is one over 7 days (a unit slip).
        ``bound``: it bounds a latency, so its unit must be written (``parse_bound``)."""
        try:
            seconds = parse_bound(value) if bound else parse_duration(value)
        except UnitError as exc:
            self.problem(path, str(exc))
            return 0.0
        if seconds > MAX_DURATION_S:
            self.problem(path, f"{value!r} is longer than 7 days; is the unit right (ms, s, m, h)?")
        return seconds

    def size(self, value: object, path: Path) -> int:
        """Bytes; an unparsable value is a problem (0)."""
        try:
            return parse_size(value)
        except UnitError as exc:
            self.problem(path, str(exc))
            return 0

    def template_in(self, text: str, path: Path, known: set[str]) -> Template:
        """``text`` compiled as a template reading only ``known`` names (else a problem each)."""
        try:
            t = Template(text)
        except TemplateError as exc:
            self.problem(path, f"template error: {exc}")
            return Template("")
        self.check_names(t.names, path, known)
        return t

    def json_template_in(self, value: object, path: Path, known: set[str]) -> JsonTemplate:
        """``value`` compiled as a JSON template reading only ``known`` names."""
        try:
            t = JsonTemplate(value)
        except TemplateError as exc:
            self.problem(path, f"template error: {exc}")
            return JsonTemplate(None)
        self.check_names(t.names, path, known)
        return t

    def check_names(self, names: frozenset[str], path: Path, known: set[str]) -> None:
        """A problem for each name not in ``known``, saying why it is not known here."""
        for name in sorted(names - known):
            hint = closest(name, known)
            if name in self.block_indexes:
                self.problem(
                    path,
                    f"variable '{name}' is the index of the repeat block at line "
                    f"{self.block_indexes[name]}, known only inside that block",
                )
            elif hint:
                self.problem(path, f"unknown variable '{name}', did you mean '{hint}'?")
            elif name in self.all_captures:
                self.problem(path, f"variable '{name}' is used before the read that captures it")
            else:
                self.problem(
                    path,
                    f"unknown variable '{name}' (declare it under 'variables', pass --var {name}=..., "
                    "or capture it in an earlier read)",
                )

    def read_file(self, rel: str, path: Path, *, binary: bool = False) -> str | bytes | None:
        """A file the scenario names (relative to it), at most 16 MiB; None and a problem when it
        cannot be read."""
        full = self.base_dir / rel
        try:
            data = read_limited(full, MAX_PAYLOAD_BYTES)  # bounded while reading: /dev/zero, FIFOs
            if data is None:
                self.problem(path, f"file '{rel}' is larger than 16 MiB")
                return None
            return data if binary else data.decode("utf-8")
        except FileNotFoundError:
            self.problem(path, f"file '{rel}' not found (looked in {full})")
        except IsADirectoryError:
            self.problem(path, f"'{rel}' is a directory, not a file")
        except UnicodeDecodeError:
            self.problem(path, f"file '{rel}' is not UTF-8 text")
        except OSError as exc:
            self.problem(path, f"cannot read file '{rel}': {exc.strerror}")
        return None

    def pem(self, value: object, path: Path, *, secret: bool = False) -> str:
        """PEM text given inline or as ``{file: ...}``; a private key (``secret``) is a secret."""
        if isinstance(value, dict):
            text = self.read_file(str(value["file"]), (*path, "file"))
            if text is None:
                return ""
            assert isinstance(text, str)
        else:
            text = str(value)
        if _PEM_MARK not in text:
            self.problem(path, "does not look like PEM text (no '-----BEGIN ...' line)")
        if secret:
            self.secrets.add(text)
        return text
