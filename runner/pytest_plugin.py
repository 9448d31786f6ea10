"""pytest plugin: scenario files are pytest tests, so a team's existing ``pytest`` run gates on them.

Registered as the ``pytest11`` entry point ``wsload``; without the installed entry point, load it with
``-p runner.pytest_plugin``. Files named ``*.ws.yaml`` / ``*.ws.yml`` (and files matching the ini
option ``wsload_files``) become one test item each, whose id is the scenario's name and whose markers
are the file's ``tags:``. Running an item loads (validates) the file, then runs it as ``wsload run``
would (once as a check, or as a load run when the file has a ``load:`` section; thresholds gate the
test either way) on a fresh event loop of its own, so it never touches the loop an asyncio-based
suite (pytest-asyncio, anyio) keeps.

What a failure shows is decided here, not by a traceback: a schema problem prints exactly as
``wsload validate`` does (``FILE:LINE:COL: path: message`` plus an excerpt); a failing run names the
step, shows its YAML lines, what was expected and what came, then the console report. The JSON report
is attached to the item's ``user_properties`` (so ``--junitxml`` carries it) and, with
``--wsload-report-dir``, written as a file.

Loading it twice (the entry point and ``-p runner.pytest_plugin`` or ``pytest_plugins``) is harmless:
once registered under one name, the module blocks the other (see ``pytest_plugin_registered``).
``-p no:wsload`` turns the installed plugin off.

The engine is imported when a scenario runs, not when the plugin loads: the plugin loads in every
pytest session of every project that installs wsload, and importing the engine (websockets, uvloop,
HDR histograms, jsonschema) costs that session about 0.3 s whether it runs a scenario or not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import json
import os
import re
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import pytest

from runner.errors import ExitCode, ScenarioError, UsageError, WsloadError

if TYPE_CHECKING:  # the rest is imported when a scenario runs: every pytest session loads this module
    from runner.reports.masking import Masker
    from runner.results.result import RunResult
    from runner.scenario.model import Scenario

__all__ = [
    "FILE_SUFFIXES",
    "EmbeddedTlsServer",
    "ScenarioFailed",
    "ScenarioFile",
    "ScenarioItem",
    "WsloadSettings",
    "console_report",
    "describe_failure",
    "run_on_fresh_loop",
    "step_excerpt",
]

T = TypeVar("T")

#: File names collected without any configuration.
FILE_SUFFIXES = (".ws.yaml", ".ws.yml")
#: pytest's own markers change how a test runs; a tag is for selection only, so these stay keywords.
_PYTEST_MARKERS = frozenset(
    {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings", "tryfirst", "trylast"}
)
#: Tags usable as markers (``-m`` expressions accept these characters; a leading ``_`` is refused).
_MARKER_RE = re.compile(r"^[A-Za-z0-9][\w.+-]*$")
#: Failure records shown in full in a failure; the console report and JSON hold the rest.
_MAX_FAILURES_SHOWN = 5
#: YAML lines shown per failing step.
_MAX_EXCERPT_LINES = 12


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WsloadSettings:
    """What the command line, ini file and environment say, resolved once per session (and worker)."""

    target: str | None
    variables: Mapping[str, str]
    report_dir: Path | None
    file_globs: tuple[str, ...]


_SETTINGS = pytest.StashKey[WsloadSettings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options in one group, each with an ini or environment fallback as the CLI has."""
    group = parser.getgroup("wsload", "wsload scenario files (*.ws.yaml)")
    group.addoption(
        "--wsload-target",
        dest="wsload_target",
        default=None,
        metavar="URL",
        help="base URL (ws:// or wss://) or 'embedded' / 'embedded-tls' for every scenario file; "
        "overrides the files' target (else env WSLOAD_TARGET, else ini wsload_target)",
    )
    group.addoption(
        "--wsload-var",
        dest="wsload_vars",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a scenario variable, as 'wsload run --var' does (repeatable)",
    )
    group.addoption(
        "--wsload-secret-var",
        dest="wsload_secret_vars",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a secret scenario variable, masked in every output, as 'wsload run --secret-var' "
        "does (repeatable)",
    )
    group.addoption(
        "--wsload-report-dir",
        dest="wsload_report_dir",
        default=None,
        metavar="DIR",
        help="also write each scenario's JSON report into DIR (one file per test)",
    )
    parser.addini("wsload_target", "base URL for scenario files (see --wsload-target)", default="")
    parser.addini(
        "wsload_files",
        "glob patterns of further scenario files to collect, e.g. 'tests/ws/*.yaml' (*.ws.yaml always are)",
        type="args",
        default=[],
    )


#: The names this module is registered under: the entry point's, and its own (``-p``, ``pytest_plugins``).
_PLUGIN_NAMES = ("wsload", __name__)


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    """Guard against loading this module twice (the entry point plus ``-p runner.pytest_plugin`` or
    ``pytest_plugins``): pluggy refuses a second name for one module with an error, but a blocked
    name is skipped quietly, so once registered under one name, block the other."""
    if plugin is not sys.modules[__name__]:
        return
    name = manager.get_name(plugin)
    for other in _PLUGIN_NAMES:
        if name in _PLUGIN_NAMES and other != name and manager.get_plugin(other) is None:
            manager.set_blocked(other)


def _settings(config: pytest.Config) -> WsloadSettings:
    from runner.scenario.variables import parse_vars

    try:
        variables = parse_vars(
            config.getoption("wsload_vars") or [], config.getoption("wsload_secret_vars") or []
        )
    except UsageError as exc:
        text = re.sub(r"--(secret-)?var\b", r"--wsload-\1var", str(exc))
        raise pytest.UsageError(text) from None
    target = (
        config.getoption("wsload_target")
        or os.environ.get("WSLOAD_TARGET")
        or str(config.getini("wsload_target") or "")
        or None
    )
    if target is not None:  # a usage error before collection, named after where it came from
        from runner.loader import target_problem

        problem = target_problem(target)
        if problem is not None:
            if config.getoption("wsload_target"):
                where = "command line: --wsload-target"
            elif os.environ.get("WSLOAD_TARGET"):
                where = "environment: WSLOAD_TARGET"
            else:
                where = "ini file: wsload_target"
            raise pytest.UsageError(f"{where}: {problem}")
    report_dir = config.getoption("wsload_report_dir")
    return WsloadSettings(
        target=target,
        variables=variables,
        report_dir=(config.invocation_params.dir / report_dir) if report_dir else None,
        file_globs=tuple(str(g) for g in config.getini("wsload_files")),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Resolve settings once (a bad ``--wsload-var`` is a usage error before collection)."""
    config.stash[_SETTINGS] = _settings(config)
    config.addinivalue_line("markers", "wsload: a wsload scenario file run as a test")


# --- collection ---------------------------------------------------------------------------------


def _is_scenario_file(path: Path, config: pytest.Config, globs: Iterable[str]) -> bool:
    if path.name.endswith(FILE_SUFFIXES):
        return True
    try:
        rel = path.relative_to(config.rootpath).as_posix()
    except ValueError:
        rel = path.as_posix()
    return any(path.match(g) or fnmatch.fnmatch(rel, g) for g in globs)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    """A scenario file becomes a ``ScenarioFile``; everything else is left to other plugins."""
    settings = parent.config.stash[_SETTINGS]
    if _is_scenario_file(file_path, parent.config, settings.file_globs):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


def _peek(path: Path) -> tuple[str, tuple[str, ...]]:
    """The name and tags a file declares, without full validation (that is the test's job).

    Uses the project's guarded YAML reader, so a hostile file cannot hang collection; an unreadable
    or invalid file still gets an item (named after the file) whose run reports the problems.
    """
    from runner.scenario.source import parse_yaml, read_source

    name: str = path.stem
    tags: tuple[str, ...] = ()
    try:
        data, _ = parse_yaml(read_source(path), str(path))
    except (ScenarioError, RecursionError):
        return name, tags
    if isinstance(data, dict):
        if isinstance(data.get("name"), str) and data["name"].strip():
            name = data["name"]
        if isinstance(data.get("tags"), list):
            tags = tuple(t for t in data["tags"] if isinstance(t, str) and t)
    # "::" separates node id parts; a line break would break every report line.
    return " ".join(name.replace("::", ":").split()), tags


def _register_marker(config: pytest.Config, name: str) -> None:
    """Declare a tag as a marker so ``--strict-markers`` accepts it (once per config)."""
    known = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    if name not in known:
        config.addinivalue_line("markers", f"{name}: wsload scenario tag")


class ScenarioFile(pytest.File):
    """One scenario file; it holds exactly one scenario, hence one item."""

    def collect(self) -> Iterator[ScenarioItem]:
        name, tags = _peek(self.path)
        item = ScenarioItem.from_parent(self, name=name)
        item.add_marker("wsload")
        for tag in tags:
            item.extra_keyword_matches.add(tag)
            if tag in _PYTEST_MARKERS or not _MARKER_RE.match(tag):
                continue
            _register_marker(self.config, tag)
            item.add_marker(tag)
        yield item


# --- running ------------------------------------------------------------------------------------


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop where it is installed. Always an explicit factory: ``asyncio.Runner`` without one sets
    and then clears the thread's current loop, which would pull the loop from under an asyncio suite."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_on_fresh_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a loop of its own; in a worker thread if this thread already runs a loop
    (pytest started from async code), where a nested ``run`` is impossible."""

    def run() -> T:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(make())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wsload-pytest") as pool:
        return pool.submit(run).result()


async def _run(scenario: Scenario, settings: WsloadSettings, path: Path) -> RunResult:
    """A check run, or the load run a ``load:`` section asks for, as ``wsload run`` decides.

    SIGINT is left to ``asyncio.Runner`` (the engines' own handlers would reset SIGTERM's handler
    for the whole process afterwards): it cancels the run, a check keeps what it measured and marks
    the result interrupted, and the item turns that into ``KeyboardInterrupt`` for pytest.
    """
    from runner.run import RunRequest, run  # (see the module docstring: imported when a scenario runs)

    # Worker processes load the file themselves: give them a path that holds from any directory,
    # and give the result back the name the test's messages use. ``workers`` None: the file's
    # ``workers:``, else one process unless the load is large.
    request = RunRequest(
        scenario=replace(scenario, file=str(path)) if scenario.load is not None else scenario,
        target=settings.target,
        variables=settings.variables,
        progress=False,
        handle_signals=False,
    )
    result = await run(request)
    return replace(result, scenario_file=scenario.file)


def console_report(result: RunResult, masker: Masker | None = None) -> str:
    """The console report as ``wsload run`` prints it: a load run's figures first, then the table."""
    from runner.reports import console

    text = console.render(result, masker)
    if result.settings.load is not None:
        from runner.load import load_summary_line

        summary = load_summary_line(result)
        text = (masker.text(summary) if masker is not None else summary) + "\n" + text
    return text


class ScenarioFailed(WsloadError):
    """A scenario ran and did not pass (exit 1); ``ScenarioItem.repr_failure`` shows ``describe_failure``."""

    exit_code = ExitCode.FAILED

    def __init__(self, scenario: Scenario, result: RunResult, masker: Masker) -> None:
        self.scenario = scenario
        self.result = result
        self.masker = masker
        super().__init__(f"scenario {scenario.name!r} failed")

    def describe(self) -> str:
        return describe_failure(self.scenario, self.result, self.masker)


class ScenarioItem(pytest.Item):
    """One scenario: load it, run it, attach the JSON report, fail with a readable account."""

    def _display_file(self) -> str:
        """The file as node ids show it (relative to the rootdir), so messages match pytest's."""
        try:
            return self.path.relative_to(self.config.rootpath).as_posix()
        except ValueError:
            return str(self.path)

    def load(self) -> Scenario:
        """Validate and build the scenario; ``ScenarioError`` lists every problem."""
        from runner.loader import load_scenario_text
        from runner.scenario.source import read_source

        settings = self.config.stash[_SETTINGS]
        file = self._display_file()
        text = read_source(self.path, file)  # at most 16 MiB + 1 byte read, whatever the file is
        # Files the scenario names resolve against its own folder, whatever the working directory.
        return load_scenario_text(
            text, file=file, variables=settings.variables, target=settings.target, base_dir=self.path.parent
        )

    def runtest(self) -> None:
        settings = self.config.stash[_SETTINGS]
        scenario = self.load()
        from runner.reports.masking import Masker

        result = run_on_fresh_loop(lambda: _run(scenario, settings, self.path))
        masker = Masker(scenario.secrets)
        self._attach(result, masker)
        if result.interrupted:
            raise KeyboardInterrupt(f"wsload: {self.name}: {result.error or 'interrupted'}")
        if not result.passed:
            raise ScenarioFailed(scenario, result, masker)
        self.add_report_section("call", "wsload", console_report(result, masker))

    def _attach(self, result: RunResult, masker: Masker) -> None:
        """The JSON report on the item (``--junitxml`` writes it as a property) and in the report dir."""
        from runner.reports import json_report

        document = json_report.document(result, masker)
        self.user_properties.append(("wsload_report", json.dumps(document, separators=(",", ":"))))
        report_dir = self.config.stash[_SETTINGS].report_dir
        if report_dir is not None:
            from runner.reports.atomic import write_atomic

            path = report_dir / (re.sub(r"[^\w.-]+", "_", self.nodeid).strip("_") + ".json")
            write_atomic(path, json_report.render(result, masker))
            self.user_properties.append(("wsload_report_file", str(path)))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        """The wsload account of a failure; a traceback only for what is a bug, not a finding."""
        exc = excinfo.value
        if isinstance(exc, ScenarioFailed):
            return exc.describe()
        if isinstance(exc, ScenarioError):
            return str(exc)  # exactly what `wsload validate` prints
        if isinstance(exc, WsloadError):
            return f"wsload: {exc}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"wsload scenario: {self.name}"


# --- the failure account (pure) -----------------------------------------------------------------


def step_excerpt(source: str, line: int, *, limit: int = _MAX_EXCERPT_LINES) -> list[str]:
    """The YAML lines of the block that starts on ``line`` (1-based), numbered like ``wsload validate``.

    The block runs while lines are blank, comments, or indented deeper than its first line, which
    covers a list item (``- read: ...`` and its keys) and a mapping entry alike.
    """
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return []

    def indent(text: str) -> int:
        return len(text) - len(text.lstrip(" "))

    first = lines[line - 1]
    base = indent(first)
    block = [line]
    for number in range(line + 1, len(lines) + 1):
        text = lines[number - 1]
        stripped = text.strip()
        if stripped and not stripped.startswith("#") and indent(text) <= base:
            break
        block.append(number)
    while len(block) > 1 and not lines[block[-1] - 1].strip():
        block.pop()
    width = len(str(block[-1]))
    out = [f"  {n:>{width}} | {lines[n - 1]}".rstrip() for n in block[:limit]]
    if len(block) > limit:
        out.append(f"  {'':>{width}} | ... {len(block) - limit} more lines")
    return out


def describe_failure(scenario: Scenario, result: RunResult, masker: Masker | None = None) -> str:
    """Why a scenario failed, for a CI log: each failing step with its YAML lines, expected and
    actual, lost thresholds, a run-level error, then the console report."""
    file = result.scenario_file or scenario.file
    source = scenario.source
    # No heading: pytest titles the section with the scenario's name, and the first line is what
    # the short summary (-ra) shows, so it should be the first finding itself.
    out: list[str] = []
    shown_steps: set[str] = set()
    for record in result.failures[:_MAX_FAILURES_SHOWN]:
        shown_steps.add(record.step)
        times = f" ({record.count} times)" if record.count > 1 else ""
        out += [f"{file}:{record.line}: step {record.step!r} failed{times}: {record.message}"]
        out += step_excerpt(source, record.line)
        out += [f"  expected: {record.expected}", f"  actual:   {record.actual}", ""]
    more = len(result.failures) - _MAX_FAILURES_SHOWN + result.failures_dropped
    if more > 0:
        out += [f"... {more} more failures (see the JSON report)", ""]
    # Steps that failed without a failure record (errors, skipped after an error) still get named.
    for step in result.steps:
        if step.failures and step.name not in shown_steps and len(shown_steps) < _MAX_FAILURES_SHOWN:
            shown_steps.add(step.name)
            out += [f"{file}:{step.line}: step {step.name!r} failed ({step.failures} of {step.count})"]
            out += step_excerpt(source, step.line)
            out += [f"  rc {e.rc}: {e.message} ({e.count} times)" for e in step.errors[:3]]
            out.append("")
    for threshold in result.thresholds:
        if not threshold.passed:
            out += [f"{file}:{threshold.line}: threshold lost: {threshold.expression}: {threshold.message}"]
            out += step_excerpt(source, threshold.line, limit=3)
            out.append("")
    if result.error:
        out += [f"{file}: run error: {result.error}", ""]
    if not out:
        out += [f"{file}: scenario {scenario.name!r} did not pass", ""]
    out += ["----- wsload report -----", console_report(result, masker).rstrip("\n")]
    text = "\n".join(out)
    return masker.text(text) if masker is not None else text


# --- fixtures -----------------------------------------------------------------------------------


class EmbeddedTlsServer(NamedTuple):
    """The TLS embedded server: its ``wss://`` URL and the CA to trust (PEM text and a file)."""

    url: str
    ca_pem: str
    ca_file: Path


@pytest.fixture(scope="session")
def wsload_server() -> Iterator[str]:
    """The embedded test server (``ws://127.0.0.1:PORT``), one per session (per xdist worker)."""
    from runner.server import EmbeddedServer

    server = EmbeddedServer(host="127.0.0.1", port=0).run_in_thread()
    try:
        yield server.url
    finally:
        server.stop_thread()


@pytest.fixture(scope="session")
def wsload_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTlsServer]:
    """The embedded test server over TLS with a generated certificate, and its CA for clients."""
    from runner.server import EmbeddedServer

    server = EmbeddedServer(host="127.0.0.1", port=0, tls=True).run_in_thread()
    try:
        ca_pem = server.ca_pem or ""
        ca_file = tmp_path_factory.mktemp("wsload-tls") / "ca.pem"
        ca_file.write_text(ca_pem, encoding="ascii")
        yield EmbeddedTlsServer(server.url, ca_pem, ca_file)
    finally:
        server.stop_thread()
