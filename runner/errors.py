"""wsload's one exception tree, and the exit codes that are the command line's contract.

    WsloadError                 anything wsload reports to a user; carries its exit code
    ├── UsageError              bad command line (exit 2)
    │   └── InvalidThreshold    a threshold expression that does not parse (in a file: a Problem)
    ├── ScenarioError           a scenario file is invalid: every Problem at once (exit 2)
    ├── BadValue                one value does not parse (also a ValueError): a unit, a template,
    │   │                       TLS arguments; the loader makes it a Problem at the value's line,
    │   │                       the engine a failed step, the command line a usage error
    │   ├── UnitError           (runner.scenario.units)
    │   ├── TemplateError       (runner.scenario.templates)
    │   ├── TlsArgumentError    (runner.client.tls)
    │   └── ShardDataError      (runner.results.codec: a report's settings.shard is damaged)
    ├── RunError                the run could not be carried out: port in use, limits (exit 3)
    │   └── ReportWriteError    a report could not be written (disk full, no permission)
    └── RegexTimeout            a step's regular expression gave up on a message (the step fails)

Exceptions private to one module, which carry an outcome to where it is turned into a return
code or a ``Problem`` (``OpenFailed`` in the client's open, the YAML bounds in ``scenario.source``)
and the pytest plugin's ``ScenarioFailed`` derive from ``WsloadError`` too: nothing raised by
wsload is outside this tree.

A signal that stops a run is not an exception of this tree: the run ends and reports what it
measured, with ``ExitCode.INTERRUPTED`` (130).

Connection failures are *not* exceptions here: like WinCC OA's functions they are return codes
with a last-error text (see ``runner.client``). Exceptions build their text in ``__str__`` from
structured fields, so callers can inspect them and reports can format them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "BadValue",
    "ExitCode",
    "InvalidThreshold",
    "Problem",
    "RegexTimeout",
    "ReportWriteError",
    "RunError",
    "ScenarioError",
    "UsageError",
    "WsloadError",
]


class ExitCode(IntEnum):
    """Exit codes of ``wsload``; documented in the README and relied upon by CI pipelines."""

    PASSED = 0
    FAILED = 1
    INVALID = 2
    COULD_NOT_RUN = 3
    INTERRUPTED = 130


class WsloadError(Exception):
    """Base of every error wsload reports to a user; ``exit_code`` says how the CLI ends."""

    exit_code: ExitCode = ExitCode.COULD_NOT_RUN


class UsageError(WsloadError):
    """The command line is wrong (unknown option value, missing file argument)."""

    exit_code = ExitCode.INVALID


class InvalidThreshold(UsageError):
    """A threshold expression names no metric, or its value is not in the metric's unit."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a scenario file, at a 1-based line and column.

    ``path`` is the dotted location inside the document (``steps[2].expect.timeout``), empty
    for problems of the whole file (YAML syntax). ``excerpt`` holds a few source lines with a
    caret, ready to print.
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    excerpt: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: "
        what = f"{self.path}: {self.message}" if self.path else self.message
        return where + what

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.path)


class ScenarioError(WsloadError):
    """A scenario file failed validation; holds every problem found, sorted by position."""

    exit_code = ExitCode.INVALID

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(problems, key=Problem.sort_key))
        super().__init__(str(self))

    def __str__(self) -> str:
        lines: list[str] = []
        for p in self.problems:
            lines.append(str(p))
            if p.excerpt:
                lines.append(p.excerpt)
        return "\n".join(lines)


class BadValue(WsloadError, ValueError):
    """One value does not parse; the text names the accepted forms. A ``ValueError`` as well,
    so pure parsers stay usable on their own; where it surfaces, it becomes a ``Problem`` (file,
    line), a failed step or a usage error."""

    exit_code = ExitCode.INVALID


class RunError(WsloadError):
    """The run cannot be carried out (server could not start, a system limit would be hit)."""

    exit_code = ExitCode.COULD_NOT_RUN


class ReportWriteError(RunError):
    """A report file could not be written; no partial file is left behind."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"cannot write report {self.path}: {self.reason}"


class RegexTimeout(WsloadError):
    """A regular expression search on one message passed its time limit (catastrophic
    backtracking); caught by the step, which fails with this text. Exit 1, as a failed step."""

    exit_code = ExitCode.FAILED

    def __init__(self, pattern: str, length: int, limit_s: float) -> None:
        super().__init__(pattern, length, limit_s)
        self.pattern = pattern
        self.length = length
        self.limit_s = limit_s

    def __str__(self) -> str:
        return (
            f"/{self.pattern}/ gave up after {self.limit_s * 1000:g} ms on a message of "
            f"{self.length} characters (catastrophic backtracking: make the pattern more specific)"
        )
