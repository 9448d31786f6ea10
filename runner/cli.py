"""The ``wsload`` command line: parse arguments, dispatch to a command module, map errors to exit codes.

``main(argv) -> int`` never calls ``sys.exit`` and never lets a traceback reach the user for bad
input; ``entry()`` is the console-script wrapper that does exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runner import __version__
from runner.commands import COMMANDS
from runner.errors import ExitCode, WsloadError

EPILOG = """\
exit codes:
  0    passed
  1    ran, and something failed (a step, an expectation or a threshold)
  2    invalid input or usage (the scenario file, the command line)
  3    could not run (server could not start, a system limit, a report not writable)
  130  interrupted (SIGINT/SIGTERM); the report of what was measured is still written

examples:
  wsload run scenarios/smoke.yaml                 run a bundled scenario against the embedded server
  wsload run my.yaml --target wss://example.org   run against your server
  wsload validate scenarios/*.yaml                check files, print every problem
  wsload schema > scenario.schema.json            the JSON Schema, for editor completion
  wsload serve --port 0                           start the embedded test server
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
    parser = build_parser()
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


def entry() -> None:
    """Console-script entry point: exit with ``main``'s code."""
    sys.exit(main())
