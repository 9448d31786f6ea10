"""``wsload schema``: print the scenario JSON Schema, for editors and other tools."""

from __future__ import annotations

import argparse
import sys

from runner.errors import ExitCode
from runner.scenario.validation import schema_text

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``schema``."""
    parser = subparsers.add_parser(
        "schema",
        help="print the scenario JSON Schema",
        description="Print the scenario JSON Schema (draft 2020-12). Save it and point your editor at it, "
        "or start a scenario with '# yaml-language-server: $schema=PATH' for completion and checking.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the schema exactly as shipped in the package."""
    sys.stdout.write(schema_text())
    return int(ExitCode.PASSED)
