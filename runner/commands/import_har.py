"""``wsload import``: a scenario from a recorded browser session (a HAR file).

Chromium's DevTools ("Save all as HAR with content") and Playwright's ``record_har_path`` keep
every WebSocket message of a session; ``runner.har`` turns them into a scenario. The result is
validated as any scenario before it is written (placeholders stand in for the secrets it reads
from the environment), so what is written loads; the names of those environment variables are
printed, never their values.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from runner.har.reader import Session

__all__ = ["add_parser", "run", "write_scenario"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``import``."""
    parser = subparsers.add_parser(
        "import",
        help="turn a recorded browser session (HAR) into a scenario",
        description="Write a scenario from the WebSocket sessions of a HAR file (Chromium DevTools: Save all "
        "as HAR with content; Playwright: record_har_path): one connection per session, its sent "
        "messages as writes, answers as reads matched by id, values reused from answers captured, "
        "secrets as ${ENV} references whose names are printed.",
    )
    parser.add_argument("har", type=Path, help="the HAR file")
    parser.add_argument(
        "-o", "--output", type=Path, help="write the scenario here (default: standard output)"
    )
    parser.add_argument("--filter", metavar="TEXT", help="only sessions whose URL contains TEXT")
    parser.add_argument(
        "--think-time",
        type=float,
        default=0.0,
        metavar="SCALE",
        help="write the recorded gaps before each sent message as sleeps, times SCALE (1: as recorded; "
        "default 0: none)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from runner.har.reader import read_sessions

    if not 0 <= args.think_time <= 100:
        raise UsageError(f"--think-time {args.think_time:g}: give a scale from 0 to 100")
    check_output(args.output, args.force)
    sessions = read_sessions(args.har, args.filter)
    return write_scenario(sessions, source=args.har.name, args=args)


def check_output(out: Path | None, force: bool) -> None:
    """Refuse, before any work, an output that exists (without ``--force``), is a directory, or
    cannot be written (its directory missing or read-only): exit 2 naming it."""
    if out is None:
        return
    if out.is_dir():
        raise UsageError(f"{out} is a directory; give a file name")
    if out.exists() and not force:
        raise UsageError(f"{out} exists; give --force to overwrite it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{out}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UsageError(f"{out}: not writable")


def write_scenario(sessions: list[Session], *, source: str, args: argparse.Namespace) -> int:
    """Write ``sessions`` as a scenario to ``args.output`` (or standard output), validated first,
    and tell the user on standard error what they need to run it (``wsload record`` too)."""
    from runner.errors import ScenarioError
    from runner.har.convert import convert
    from runner.loader import load_scenario_text

    out: Path | None = args.output
    imported = convert(sessions, source=source, think_scale=args.think_time)
    placeholders = {name: f"placeholder-for-{name.lower()}" for name in imported.env}
    try:
        load_scenario_text(
            imported.text,
            file=str(out or "<imported>"),
            base_dir=(out or Path("x")).resolve().parent,
            environ=placeholders,
        )
    except ScenarioError as exc:  # a session this importer cannot express yet: say so, write nothing
        raise UsageError(f"the scenario made from {source} does not validate (a wsload bug): {exc}") from None
    if out is not None:
        try:
            out.write_text(imported.text, encoding="utf-8")
        except OSError as exc:  # (checked before; a disk full or a directory gone since)
            print(f"wsload: cannot write {out} ({exc.strerror}); the scenario follows", file=sys.stderr)
            out = None
    if out is None:
        sys.stdout.write(imported.text)
    err = sys.stderr
    print(
        f"wsload: {len(sessions)} session(s), {sum(len(s.frames) for s in sessions)} messages -> "
        f"{out or 'standard output'}",
        file=err,
    )
    for note in imported.notes:
        print(f"  note: {note}", file=err)
    if imported.env:
        print("  secrets from the recording are read from the environment; before running, set:", file=err)
        for name in imported.env:
            print(f"    export {name}=...", file=err)
    return int(ExitCode.PASSED)
