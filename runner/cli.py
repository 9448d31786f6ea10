"""The ``wsload`` command line: parse arguments, dispatch to a command module, map errors to exit codes.

``main(argv) -> int`` never calls ``sys.exit`` and never lets a traceback reach the user for bad
input; ``entry()`` is the console-script wrapper that does exit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from runner import __version__
from runner.commands import COMMANDS
from runner.errors import ExitCode, WsloadError
from runner.runtime import early_stop_signals

EPILOG = """\
exit codes:
  0    passed
  1    ran, and something failed (a step, an expectation or a threshold)
  2    invalid input or usage (the scenario file, the command line)
  3    could not run (server could not start, a system limit, a report not writable)
  130  interrupted (SIGINT/SIGTERM); the report of what was measured is still written
  A reader that goes away (wsload ... | head -1) changes nothing: the rest of the output is
  dropped, the command finishes (a run still writes its reports) and exits with its own code.

examples:
  wsload run scenarios/smoke.yaml                 run a bundled scenario against the embedded server
  wsload run my.yaml --target wss://example.org   run against your server
  wsload validate scenarios/*.yaml                check files, print every problem
  wsload schema > scenario.schema.json            the JSON Schema, for editor completion
  wsload serve --port 0                           start the embedded test server
  wsload import session.har -o my.yaml            a scenario from a browser's recorded session
  wsload record --upstream wss://app.example.org  record through a proxy; Ctrl-C writes the scenario
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsload",
        description="Run WebSocket scenarios written in YAML: once as a check, or as a load test.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wsload {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"runner.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one wsload command and return its exit code (see ``EPILOG``)."""
    try:
        parser = build_parser()  # imports every command: a Ctrl-C may well land here
    except KeyboardInterrupt:
        print("wsload: interrupted before any scenario ran", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.INVALID
    try:
        return int(args.handler(args))
    except WsloadError as exc:
        print(f"wsload: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("wsload: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


class _QuietWhenReaderGone:
    """``sys.stdout``/``sys.stderr`` for the process: once the reader of a pipe has gone
    (``wsload validate ... | head -1``) the rest of the output is dropped instead of raising
    ``BrokenPipeError`` wherever the next ``print`` happens to be, so the command still does its
    work (a run writes its reports) and exits with its own code. Python ignores SIGPIPE, so a
    write to such a pipe fails with EPIPE; see "Note on SIGPIPE" in the ``signal`` docs.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.gone = True
        # Python flushes the stream once more at exit: aim its descriptor at /dev/null, so that
        # flush cannot fail again ("Exception ignored ... BrokenPipeError", exit code 120).
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def entry() -> None:
    """Console-script entry point: exit with ``main``'s code; a closed pipe is not an error, nor
    is a signal before or after a run (``runner.runtime.early_stop_signals``)."""
    early_stop_signals()
    sys.stdout = _QuietWhenReaderGone(sys.stdout)  # type: ignore[assignment]
    sys.stderr = _QuietWhenReaderGone(sys.stderr)  # type: ignore[assignment]
    try:
        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:  # outside main's own guard (its first lines, the last flush)
        print("wsload: interrupted", file=sys.stderr)
        code = int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # written past the guard (a library holding the raw stream)
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.__stdout__.fileno())  # type: ignore[union-attr]
        code = int(ExitCode.FAILED)
    sys.exit(code)
