"""``wsload metrics``: every name a threshold can use, with its unit and exact meaning.

The listing is ``runner.thresholds.CATALOG``, the same table the threshold parser reads, so it
cannot drift from what a threshold accepts; ``--markdown`` prints the README's table.
"""

from __future__ import annotations

import argparse
import sys

from runner.checks.thresholds import metrics_table
from runner.errors import ExitCode

__all__ = ["add_parser", "render", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``metrics``."""
    parser = subparsers.add_parser(
        "metrics",
        help="list every name a threshold can use, with its unit and meaning",
        description="List every SUBJECT.STAT a threshold can use ('read.p99 < 50ms'): STEP stands for "
        "any step name or step kind of the scenario (all steps of that kind together).",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (as in the README)")
    parser.set_defaults(handler=run)


def render(markdown: bool = False) -> str:
    rows = metrics_table()
    if markdown:
        lines = ["| name | unit | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | {unit} | {meaning} |" for name, unit, meaning in rows]
        return "\n".join(lines) + "\n"
    width = max(len(name) for name, _, _ in rows)
    uwidth = max(len(unit) for _, unit, _ in rows)
    return "".join(f"{name:<{width}}  {unit:<{uwidth}}  {meaning}\n" for name, unit, meaning in rows)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(render(args.markdown))
    return int(ExitCode.PASSED)
