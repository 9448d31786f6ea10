"""``wsload run FILE...``: run scenarios once as checks; console, JSON and JUnit reports; exit codes.

Every file is loaded (and validated) before anything runs, so an invalid file costs no run. Each
scenario runs in turn on uvloop (asyncio's own loop where uvloop is missing); a SIGINT/SIGTERM
stops the current scenario, keeps what it measured, skips the rest and exits 130 after the reports
are written. Reports go to ``--report-dir`` with a timestamped name, and to ``--json``/``--junit``
paths when given, always atomically.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from runner.commands import report as outputs
from runner.commands.cluster_options import add_cluster_options, check_cluster_options, shard_of, start_of
from runner.errors import ExitCode, ReportWriteError, RunError, ScenarioError, UsageError
from runner.load.settings import LoadOverrides
from runner.reports import console, json_report, junit
from runner.reports.atomic import write_atomic
from runner.reports.masking import Masker
from runner.results.result import RunResult
from runner.run import RunRequest
from runner.run import run as run_one
from runner.scenario.model import Scenario
from runner.scenario.secrets import userinfo_secrets
from runner.scenario.variables import parse_vars

if TYPE_CHECKING:
    from runner.dashboard import Dashboard

__all__ = ["add_parser", "exit_code_of", "parse_vars", "run", "run_scenarios"]

T = TypeVar("T")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run",
        help="run scenarios once as checks (smoke checks, CI gates), or as load tests",
        description="Run each scenario once (or as a load test when it has a load: section or a "
        "load option is given) and report; exit 0 passed, 1 failed, 2 invalid, "
        "3 could not run, 130 interrupted.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files")
    parser.add_argument(
        "--target",
        default=os.environ.get("WSLOAD_TARGET"),
        help="base URL (ws:// or wss://), or 'embedded' / 'embedded-tls' for the built-in server "
        "(env WSLOAD_TARGET)",
    )
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a scenario variable (repeatable)",
    )
    parser.add_argument(
        "--secret-var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a scenario variable whose value is secret: masked in every output, like "
        "${ENV} values (repeatable)",
    )
    parser.add_argument(
        "--seed",
        type=_seed_arg,
        metavar="N",
        help="seed of the users' drawn think times (sleep with min/max/mean): the same seed, the "
        "same waits (default: the file's seed:, else a new one, written in the report)",
    )
    out = parser.add_argument_group("reports")
    out.add_argument(
        "--report-dir",
        default=os.environ.get("WSLOAD_REPORT_DIR", "reports"),
        metavar="DIR",
        help="where timestamped JSON and JUnit reports go (default: reports/, env WSLOAD_REPORT_DIR); "
        "'' for none",
    )
    out.add_argument("--json", dest="json_path", metavar="PATH", help="also write the JSON report here")
    out.add_argument(
        "--junit", dest="junit_path", metavar="PATH", help="also write the JUnit XML report here"
    )
    outputs.add_output_options(parser)  # --html, --prometheus-textfile, --pushgateway, --every, --rounds
    add_load_options(parser)
    add_cluster_options(parser)  # --shard K/N, --start-at, --cluster
    live = parser.add_argument_group("live dashboard")
    live.add_argument(
        "--dashboard",
        nargs="?",
        const="127.0.0.1:0",
        metavar="[HOST:]PORT",
        help="watch the run in a browser, live: serve a page that shows its report each second "
        "(default 127.0.0.1 and a free port; the URL is printed at the start)",
    )
    live.add_argument(
        "--dashboard-token",
        nargs="?",
        const="",
        metavar="TOKEN",
        help="allow stopping the run from the page (like Ctrl-C) to whoever opens it with "
        "?token=TOKEN; without TOKEN one is made and printed in the URL (env WSLOAD_DASHBOARD_TOKEN); "
        "required to bind a non-loopback HOST",
    )
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="print only the final PASS/FAIL lines")
    noise.add_argument(
        "-v", "--verbose", action="store_true", help="print every error group and failure detail"
    )
    parser.set_defaults(handler=outputs.repeating(run))
    return parser  # type: ignore[no-any-return]


def _seed_arg(text: str) -> int:
    """``--seed``: a whole number from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 1 << 63:
        raise argparse.ArgumentTypeError(f"{text!r}: a seed is from 0 to {(1 << 63) - 1}")
    return value


def _duration_arg(text: str) -> float:
    """``--duration``: a duration in the file's units and bounds."""
    from runner.loader import MAX_DURATION_S
    from runner.scenario.units import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value > MAX_DURATION_S:  # the same bound as in a file: a typo, not a week-long run
        raise argparse.ArgumentTypeError(f"{text!r} is longer than 7 days; is the unit right?")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a load of duration 0 runs nothing")
    return value


def _rate_arg(text: str) -> float:
    """``--rate``: starts per second (``500`` or ``500/s``, or another unit of the file's)."""
    from runner.scenario.units import parse_rate

    try:
        value = parse_rate(text if "/" in text else f"{text}/s")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a rate of 0 starts nothing")
    return value


def _bounded_arg(most: int) -> Callable[[str], int]:
    """A whole number from 1 to ``most``, as an argument type."""

    def positive(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"{value} is not between 1 and {most:,}")
        return value

    return positive


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The load group: any of these (or a ``load:`` section) makes the run a load test."""
    from runner.loader import MAX_ITERATIONS, MAX_VUS, MAX_WORKERS

    duration, rate, bounded = _duration_arg, _rate_arg, _bounded_arg
    load = parser.add_argument_group("load (a file's load: section, or any of these, makes a load run)")
    load.add_argument("--vus", type=bounded(MAX_VUS), help="closed model: concurrent virtual users")
    load.add_argument(
        "--duration",
        type=duration,
        metavar="DURATION",
        help="how long the load runs, e.g. 60s, 5m (replaces stages)",
    )
    load.add_argument(
        "--rate", type=rate, metavar="RATE", help="open model: iteration starts per second, e.g. 500 or 500/s"
    )
    load.add_argument(
        "--iterations",
        type=bounded(MAX_ITERATIONS),
        help="iterations per virtual user (closed) or in total (open)",
    )
    load.add_argument("--max-vus", type=bounded(MAX_VUS), help="open model: the most virtual users at once")
    load.add_argument(
        "--workers",
        type=bounded(MAX_WORKERS),
        help="worker processes (default: env WSLOAD_WORKERS, else one per core from 500 "
        "connections or starts/s, else 1); given alone it makes a load run",
    )
    load.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="EXPR",
        help="an extra threshold, e.g. 'read.p99 < 50ms' (repeatable)",
    )
    load.add_argument(
        "--source-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="local address to connect from (repeatable; spreads connections)",
    )
    load.add_argument(
        "--check", action="store_true", help="run once as a check even when the file has a load: section"
    )
    load.add_argument(
        "--check-capacity",
        action="store_true",
        help="find how much of this scenario this machine's workers can generate against the target "
        "while staying healthy: a ramp up to --rate (open model) or --vus (closed) over --duration "
        "(default 20s); prints the capacity and what to plan (80%% of it)",
    )


def run_request(args: argparse.Namespace, scenario: Scenario) -> RunRequest:
    """How the command line asks one scenario to run (``runner.run`` decides the mode)."""
    env = os.environ.get("WSLOAD_WORKERS", "").strip()
    return RunRequest(
        scenario=scenario,
        target=args.target,
        overrides=LoadOverrides(
            vus=args.vus,
            duration_s=args.duration,
            rate=args.rate,
            iterations=args.iterations,
            max_vus=args.max_vus,
            thresholds=tuple(args.threshold),
            source_addresses=tuple(args.source_address),
        ),
        workers=args.workers,
        default_workers=max(1, int(env)) if env.isdigit() else None,  # sizes a load run, makes none
        check=args.check,
        shard=shard_of(args),
        cluster=args.cluster,
        start_unix_ns=start_of(args),
        variables=parse_vars(args.var, args.secret_var),
        progress=not args.quiet,
        seed=args.seed,
    )


#: A dashboard token this long at least: a guess must not stop a run (a made one has 24).
MIN_TOKEN = 16


def _dashboard(args: argparse.Namespace, secrets: set[str]) -> Dashboard | None:
    """``--dashboard``: the live page's server, started once and kept across ``--every`` rounds
    (so a browser watches round after round). Its token is printed once, in the URL, and enters
    no result (so no report can hold it); ``WSLOAD_DASHBOARD_TOKEN`` keeps it out of ``ps``."""
    token = args.dashboard_token
    if token is not None and args.dashboard is None:
        raise UsageError("--dashboard-token is for --dashboard: give --dashboard [HOST:]PORT too")
    if args.dashboard is None:
        return None
    if getattr(args, "shard", None):
        raise UsageError(
            "--dashboard watches a whole run: a shard's page would show one shard, and build it on "
            "the loop that measures; watch a sharded run from its --cluster client"
        )
    if token is None:
        token = os.environ.get("WSLOAD_DASHBOARD_TOKEN") or None  # (off the command line: not in ps)
    elif token == "":
        token = token_urlsafe(18)
    if token is not None and len(token) < MIN_TOKEN:
        raise UsageError(
            f"--dashboard-token: at least {MIN_TOKEN} characters (or --dashboard-token alone for a made one)"
        )
    server: Dashboard | None = getattr(args, "_wsload_dashboard", None)
    if server is None:
        # Imported here: with the HTML report it is 2.5 MiB of a run's memory (measured), and
        # only a run with --dashboard serves a page before its end.
        from runner.dashboard import Dashboard, parse_address

        host, port = parse_address(args.dashboard)
        server = Dashboard(host, port, token=token, masker=Masker(secrets))
        url = server.start()
        shown = f"{url}?token={quote(token, safe='')}" if token else url
        what = " (it can stop the run)" if token else ""
        everywhere = (
            ", listening on every address of this machine" if url.startswith("http://0.0.0.0") else ""
        )
        # The URL alone on its line: copied with a trailing ';' the token was wrong and a stop refused.
        print(f"wsload: live dashboard{what}{everywhere}:\n  {shown}", file=sys.stderr, flush=True)
        args._wsload_dashboard = server
    return server


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def exit_code_of(results: Sequence[RunResult]) -> ExitCode:
    """The command's exit code from the scenarios' results (interrupted beats failed)."""
    if any(r.interrupted for r in results):
        return ExitCode.INTERRUPTED
    if any(not r.passed for r in results):
        return ExitCode.FAILED
    return ExitCode.PASSED


async def run_scenarios(
    requests: Sequence[RunRequest], *, verbose: bool = False, dashboard: Dashboard | None = None
) -> list[RunResult]:
    """Run each request in order; stop after one that was interrupted. ``dashboard``: the page
    becomes each run's report as it ends."""
    results: list[RunResult] = []
    for request in requests:
        if verbose:
            print(f"wsload: running {request.scenario.file}", file=sys.stderr, flush=True)
        result = await run_one(request)
        if dashboard is not None:
            await asyncio.to_thread(dashboard.final, result, request.scenario.source)
        results.append(result)
        if result.interrupted:
            break
    return results


def _stems(files: Sequence[str]) -> list[str]:
    """File stems for report names, made unique (``a/smoke.yaml b/smoke.yaml`` -> smoke, smoke-2)."""
    seen: dict[str, int] = {}
    stems = []
    for f in files:
        stem = Path(f).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def _report_paths(report_dir: str, files: Sequence[str], stamp: str) -> tuple[list[str], str | None]:
    """Timestamped names in ``report_dir``: one JSON per scenario, one JUnit for the run."""
    if not report_dir:
        return [], None
    names = [f"wsload-{stamp}-{stem}.json" for stem in _stems(files)]
    return [os.path.join(report_dir, n) for n in names], os.path.join(report_dir, f"wsload-{stamp}.junit.xml")


def _explicit_json_paths(path: str, results: Sequence[RunResult]) -> list[str]:
    """``--json PATH``: that path for one scenario; ``PATH-<stem>.json`` for each of several."""
    if len(results) <= 1:
        return [path]
    base, ext = os.path.splitext(path)
    return [f"{base}-{stem}{ext or '.json'}" for stem in _stems([r.scenario_file for r in results])]


def write_reports(
    args: argparse.Namespace, results: Sequence[RunResult], masker: Masker, stamp: str
) -> list[str]:
    """Write every report; the first failure raises ``ReportWriteError`` after trying the rest."""
    written: list[str] = []
    failure: ReportWriteError | None = None
    jobs: list[tuple[str, str]] = []
    default_json, default_junit = _report_paths(args.report_dir, [r.scenario_file for r in results], stamp)
    for path, result in zip(default_json, results, strict=False):
        jobs.append((path, json_report.render(result, masker)))
    if default_junit:
        jobs.append((default_junit, junit.render(results, masker)))
    if args.json_path:
        for path, result in zip(_explicit_json_paths(args.json_path, results), results, strict=True):
            jobs.append((path, json_report.render(result, masker)))
    if args.junit_path:
        jobs.append((args.junit_path, junit.render(results, masker)))
    for path, text in jobs:
        try:
            write_atomic(path, text)
            written.append(path)
        except ReportWriteError as exc:
            failure = failure or exc
            print(f"wsload: {exc}", file=sys.stderr)
    if failure is not None:
        raise failure
    return written


def check_target_option(target: str | None, option: str = "--target", env: str = "WSLOAD_TARGET") -> None:
    """A ``--target`` that is no usable target is the command line's mistake (exit 2), said so
    before any file is read (``command line: --target: ...``), or the environment's."""
    from runner.loader import target_problem

    problem = None if target is None else target_problem(target)
    if problem is not None:
        from_env = bool(env) and target == os.environ.get(env)
        where = f"environment: {env}" if from_env else f"command line: {option}"
        raise UsageError(f"{where}: {problem}")


def warn_unused_vars(variables: Sequence[str], scenarios: Sequence[Scenario]) -> None:
    """On stderr, each ``--var`` name that none of ``scenarios`` uses (a misspelling, probably)."""
    from runner.scenario.validation import unused_variables

    if variables and scenarios:
        for warning in unused_variables(variables, scenarios):
            print(f"wsload: warning: {warning}", file=sys.stderr)


def report_dirs(args: argparse.Namespace) -> list[str]:
    """The directories this run will write reports into (``--report-dir``, and those of
    ``--json``, ``--junit``, ``--html``, ``--prometheus-textfile``)."""
    dirs = [args.report_dir] if args.report_dir else []
    for path in (args.json_path, args.junit_path, getattr(args, "html_path", None),
                 getattr(args, "prometheus_textfile", None)):  # fmt: skip
        if path:
            dirs.append(os.path.dirname(os.path.abspath(path)))
    return list(dict.fromkeys(os.path.abspath(d) for d in dirs))


def check_report_dirs(dirs: Sequence[str]) -> None:
    """Each report directory exists (it is made if missing) and takes a file: a temporary one is
    written and removed. ``RunError`` (exit 3) now rather than after a run of an hour."""
    import tempfile

    for directory in dirs:
        try:
            os.makedirs(directory, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".wsload-probe-"):
                pass
        except OSError as exc:
            raise RunError(f"cannot write reports to {directory}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """The ``run`` command: load every file, run each, print and write reports, return the exit code."""
    from runner.loader import load_scenario

    variables = parse_vars(args.var, args.secret_var)
    check_target_option(args.target)
    check_cluster_options(args)
    scenarios: list[Scenario] = []
    problems: list[ScenarioError] = []
    for file in args.files:
        try:
            scenarios.append(load_scenario(file, variables=variables, target=args.target))
        except ScenarioError as exc:
            problems.append(exc)
    if problems:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        return int(ExitCode.INVALID)
    warn_unused_vars(list(variables), scenarios)
    check_report_dirs(report_dirs(args))
    secrets: set[str] = set(userinfo_secrets(getattr(args, "pushgateway", None) or ""))
    for s in scenarios:
        secrets.update(s.secrets)
    dashboard = _dashboard(args, secrets)
    masker = Masker(secrets)
    now = time.time()  # milliseconds in the name: two runs in one second keep both reports
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    if getattr(args, "check_capacity", False):
        return _check_capacity(args, scenarios, masker)
    try:
        requests = [replace(run_request(args, s), live=dashboard) for s in scenarios]
        results = _run_loop(run_scenarios(requests, verbose=args.verbose, dashboard=dashboard))
    except RunError:
        raise
    except KeyboardInterrupt:  # a signal before the handlers were in place
        print("wsload: interrupted before any scenario ran", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    for result in results:
        if result.settings.load is not None:  # before the report, whose last line is the verdict
            from runner.load import load_summary_line

            sys.stdout.write(masker.text(load_summary_line(result)) + "\n")
        if not args.quiet:
            sys.stdout.write(console.render(result, masker, verbose=args.verbose))
        else:
            sys.stdout.write(masker.text(console.verdict_line(result)) + "\n")
    if len(results) > 1 or len(results) < len(scenarios):
        sys.stdout.write(masker.text(console.summary_line(results)) + "\n")
    sys.stdout.flush()
    try:
        written = write_reports(args, results, masker, stamp)
        written += outputs.write_outputs(args, results, masker, [s.source for s in scenarios])
    except ReportWriteError:
        return int(ExitCode.COULD_NOT_RUN)
    files = [p for p in written if p != getattr(args, "pushgateway", None)]
    if files and not args.quiet:  # on stderr: the last line on stdout stays the verdict
        print(f"reports: {', '.join(_shown(p) for p in files)}", file=sys.stderr)
    return int(exit_code_of(results))


#: ``--check-capacity`` without --rate / --vus: the top of the ramp (open: starts/s, closed: users).
CAPACITY_TOP_RATE = 10_000.0
CAPACITY_TOP_VUS = 5_000.0
CAPACITY_RAMP_S = 20.0


def _check_capacity(args: argparse.Namespace, scenarios: Sequence[Scenario], masker: Masker) -> int:
    """``--check-capacity``: ramp each scenario's load and print the capacity found (exit 0), or
    that no level was healthy (exit 1). The ramp's JSON report goes where reports go."""
    from dataclasses import replace

    from runner.load import Progress, run_load
    from runner.load.capacity import capacity_of, ramp_plan, render
    from runner.run import seeded
    from runner.scenario.model import LoadSpec

    code = ExitCode.PASSED
    for scenario in scenarios:
        if scenario.populations:
            raise UsageError(
                f"--check-capacity ramps one scenario's load; {scenario.file} is a plan of populations: "
                "find the capacity of each population's file on its own"
            )
        load = scenario.load or LoadSpec()
        if args.rate is not None:
            load = replace(load, model="open", stages=())
        elif args.vus is not None:
            load = replace(load, model="closed", stages=(), rate=None)
        if load.model == "open":
            top = (
                args.rate
                or max(load.rate or 0.0, *(st.target for st in load.stages)) * 4
                or CAPACITY_TOP_RATE
            )
        else:
            top = float(args.vus or load.vus * 4 or CAPACITY_TOP_VUS)
        ramp = ramp_plan(load, top, args.duration or CAPACITY_RAMP_S)
        probe = replace(seeded(scenario, args.seed), load=ramp, thresholds=())
        result = _run_loop(
            run_load(
                probe,
                target=args.target,
                workers=args.workers,
                progress=None if args.quiet else Progress(),
                variables=parse_vars(args.var),
            )
        )
        capacity = capacity_of(result, ramp)
        sys.stdout.write(
            masker.text(
                render(
                    probe,
                    capacity,
                    workers=result.settings.load.workers if result.settings.load else 1,
                    target=result.target,
                )
            )
        )
        if capacity.value <= 0:
            code = ExitCode.FAILED
        if result.interrupted:
            return int(ExitCode.INTERRUPTED)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        args_for_reports = argparse.Namespace(**{**vars(args), "junit_path": None})
        write_reports(
            args_for_reports,
            [replace(result, settings=replace(result.settings, mode="capacity"))],
            masker,
            stamp,
        )
    return int(code)


def _shown(path: str) -> str:
    """A report path as a user would type it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
