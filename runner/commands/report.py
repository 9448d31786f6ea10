"""``wsload report RESULT.json [more.json ...] [-o PATH]``: the HTML report again from saved JSON
reports; two or more give a side-by-side comparison (before and after a change).

Also the output options ``wsload run`` borrows from here (``--html``, ``--prometheus-textfile``,
``--pushgateway``) and its repeat loop (``--every 5m``, ``--rounds N``), so the run command only
wires them in: ``add_output_options(parser)``, ``write_outputs(...)`` and ``repeating(run)``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from runner.errors import ExitCode, ReportWriteError, UsageError
from runner.reports.atomic import write_atomic
from runner.reports.masking import Masker
from runner.results.codec import decode
from runner.results.result import RunResult
from runner.scenario.units import parse_duration

__all__ = ["add_output_options", "add_parser", "load_results", "repeating", "run", "write_outputs"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="render the HTML report from saved JSON reports (two or more: compare them)",
        description="Render the self-contained HTML report of a saved JSON report; with two or more, "
        "a side-by-side comparison of the runs (in the order given, the last compared with the first).",
    )
    parser.add_argument(
        "results", nargs="+", metavar="RESULT.json", help="JSON reports written by wsload run"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where the HTML goes (default: RESULT.html beside the first JSON; "
        "FIRST-vs-LAST.html for a comparison)",
    )
    parser.set_defaults(handler=run)
    return parser


def load_results(paths: Sequence[str]) -> list[RunResult]:
    """Read saved JSON reports; ``UsageError`` (exit 2) naming the file for anything unreadable."""
    results = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: not a JSON file: {exc}") from exc
        try:
            results.append(decode(doc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"{path}: not a wsload JSON report (missing or wrong field {exc})") from exc
    return results


def _default_output(paths: Sequence[str]) -> str:
    first = Path(paths[0])
    if len(paths) == 1:
        return str(first.with_suffix(".html"))
    return str(first.with_name(f"{first.stem}-vs-{Path(paths[-1]).stem}.html"))


def run(args: argparse.Namespace) -> int:
    """The ``report`` command: read the JSON reports, write the HTML, print its path."""
    results = load_results(args.results)
    out = args.output or _default_output(args.results)
    from runner.reports import html  # (2.5 MiB of memory: imported when a page is written)

    write_atomic(out, html.render(results, Masker()))
    print(out)
    return int(ExitCode.PASSED)


# --- outputs of ``wsload run`` ----------------------------------------------------------------


def _interval(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the interval must be more than 0")
    return seconds


def _rounds(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of rounds, 1 or more")
    return n


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--html``, ``--prometheus-textfile``, ``--pushgateway``, ``--every``, ``--rounds``."""
    out = parser.add_argument_group("HTML report and monitoring")
    out.add_argument(
        "--html",
        dest="html_path",
        metavar="PATH",
        help="also write the self-contained HTML report here (PATH-<file>.html for several files)",
    )
    out.add_argument(
        "--prometheus-textfile",
        metavar="PATH",
        default=os.environ.get("WSLOAD_PROMETHEUS_TEXTFILE"),
        help="write Prometheus metrics here for node_exporter's textfile collector "
        "(name it *.prom; env WSLOAD_PROMETHEUS_TEXTFILE)",
    )
    out.add_argument(
        "--pushgateway",
        metavar="URL",
        default=os.environ.get("WSLOAD_PUSHGATEWAY"),
        help="push Prometheus metrics to this Pushgateway, job 'wsload' (env WSLOAD_PUSHGATEWAY)",
    )
    loop = parser.add_argument_group("repeat (a smoke-check loop without cron)")
    loop.add_argument(
        "--every",
        type=_interval,
        metavar="DURATION",
        help="run again every DURATION (e.g. 5m) until SIGTERM/SIGINT; each round writes "
        "its reports and updates the metrics (--json/--html/--prometheus-textfile are replaced, "
        "--report-dir gains timestamped files each round: '' turns them off)",
    )
    loop.add_argument(
        "--rounds",
        type=_rounds,
        metavar="N",
        help="stop after N rounds (with --every, or back to back without it)",
    )


def _html_paths(path: str, results: Sequence[RunResult]) -> list[str]:
    """``--html PATH``: that path for one scenario; ``PATH-<stem>.html`` (``-<stem>-2`` ...) for several,
    named like ``--json``'s files."""
    if len(results) <= 1:
        return [path]
    base, ext = os.path.splitext(path)
    seen: dict[str, int] = {}
    out = []
    for r in results:
        stem = Path(r.scenario_file).stem
        seen[stem] = seen.get(stem, 0) + 1
        out.append(f"{base}-{stem if seen[stem] == 1 else f'{stem}-{seen[stem]}'}{ext or '.html'}")
    return out


def _write_html(path: str, result: RunResult, masker: Masker, source: str) -> None:
    from runner.reports import html  # (2.5 MiB of every run's memory until it ends, imported)

    write_atomic(path, html.render(result, masker, sources=[source or None]))


def write_outputs(
    args: argparse.Namespace, results: Sequence[RunResult], masker: Masker, sources: Sequence[str] = ()
) -> list[str]:
    """Write the HTML report(s), the textfile and the push; ``ReportWriteError`` after trying all.

    ``sources``: each scenario's (masked) text, in the order of ``results``.
    """
    if not results:
        return []
    written: list[str] = []
    failure: ReportWriteError | None = None

    def attempt(target: str, job: Callable[[], None]) -> None:
        nonlocal failure
        try:
            job()
            written.append(target)
        except ReportWriteError as exc:
            failure = failure or exc
            print(f"wsload: {masker.text(str(exc))}", file=sys.stderr)  # a pushgateway URL's userinfo

    srcs = list(sources)[: len(results)]
    srcs += [""] * (len(results) - len(srcs))
    if getattr(args, "html_path", None):
        for path, result, src in zip(_html_paths(args.html_path, results), results, srcs, strict=True):
            attempt(path, partial(_write_html, path, result, masker, src))
    if getattr(args, "prometheus_textfile", None) or getattr(args, "pushgateway", None):
        # Imported here: prometheus_client is needed only when metrics are asked for.
        from runner.reports import prometheus
    if getattr(args, "prometheus_textfile", None):
        attempt(
            args.prometheus_textfile,
            lambda: prometheus.write_textfile(args.prometheus_textfile, results, masker),
        )
    if getattr(args, "pushgateway", None):
        attempt(args.pushgateway, lambda: prometheus.push(args.pushgateway, results, masker))
    if failure is not None:
        raise failure
    return written


class _StopSignals:
    """Remember a SIGINT/SIGTERM instead of dying, so the loop ends between rounds.

    The engine installs its own handlers while a scenario runs (the round is then interrupted and
    reported) and restores the defaults after; ``install`` puts ours back before each wait.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._saved.setdefault(sig, previous)

    def restore(self) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)
        self._saved.clear()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in short slices; True if a stop signal came."""
        deadline = time.monotonic() + seconds
        while self.received is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.05))
        return self.received is not None


@contextmanager
def _stop_signals() -> Iterator[_StopSignals]:
    stop = _StopSignals()
    stop.install()
    try:
        yield stop
    finally:
        stop.restore()


#: The word of each exit code in a round's line.
_VERDICTS: dict[int, str] = {
    ExitCode.PASSED: "PASS",
    ExitCode.FAILED: "FAIL",
    ExitCode.INVALID: "INVALID",
    ExitCode.COULD_NOT_RUN: "COULD NOT RUN",
    ExitCode.INTERRUPTED: "INTERRUPTED",
}


def _round_line(n: int, started_unix: float, code: int) -> str:
    """``round 3 at 2026-12-04T10:15:00Z: PASS``: which round, when it started (UTC), its verdict."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_unix))
    verdict = _VERDICTS.get(code, f"exit {code}")
    return f"round {n} at {at}: {verdict}"


def repeating(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``handler`` run once, or in rounds with ``--every``/``--rounds`` (rounds start ``--every`` apart).

    After each round a line says its number, start time and verdict (``round 3 at ...Z: PASS``).
    A SIGTERM/SIGINT between rounds is the normal way to end the loop: it ends at once with the
    last round's exit code (0 when it passed), its reports left as written (with ``--rounds``, the
    worst so far). A signal during a
    round interrupts that round, which is reported as interrupted, and the loop ends with 130.
    ``--rounds N`` ends it with the worst code of its rounds so far, a signal or not (a gate of N
    rounds passes only if every round did). Invalid input (exit 2) ends it at once: waiting will
    not fix the file.
    """

    def run_rounds(args: argparse.Namespace) -> int:
        every: float | None = getattr(args, "every", None)
        rounds: int | None = getattr(args, "rounds", None)
        if every is None and rounds is None:
            return handler(args)
        with _stop_signals() as stop:
            n = 0
            worst = int(ExitCode.PASSED)
            while True:
                n += 1
                started = time.monotonic()
                started_unix = time.time()
                code = handler(args)
                stop.install()  # the engine's handlers left the defaults behind
                print(_round_line(n, started_unix, code), flush=True)
                if code == ExitCode.INTERRUPTED:
                    return int(ExitCode.INTERRUPTED)
                # A signal that came while the round was being set up or reported (the engine
                # did not see it) stops the loop as one between rounds does.
                if code == ExitCode.INVALID:
                    return code
                worst = max(worst, code)
                # --rounds is a gate: its worst round so far; --every alone, a monitor: its latest.
                ended = worst if rounds is not None else code
                if stop.received is not None or (rounds is not None and n >= rounds):
                    return ended
                # Start to start, like cron: a 5m interval means a round every 5 minutes however
                # long each takes (a round longer than the interval is followed at once).
                wait = max(0.0, started + (every or 0.0) - time.monotonic())
                if getattr(args, "verbose", False):
                    print(f"wsload: round {n} done (exit {code}); next in {wait:.1f}s", file=sys.stderr)
                if wait and stop.wait(wait):
                    if getattr(args, "verbose", False):
                        print(f"wsload: stopped by signal {stop.received} between rounds", file=sys.stderr)
                    return ended

    return run_rounds
