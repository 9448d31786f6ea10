"""``wsload merge A.json B.json ... [-o OUT.json] [--html OUT.html] [--junit OUT.xml]``: shard
reports (``wsload run --shard K/N``) combined into the report of the whole run.

The merge itself is ``runner.load.merge`` (pure); this module reads files, prints the usual console
report and writes the outputs. Exit code: the merged verdict (0 passed; 1 failed, a lost
threshold, or incomplete: shards missing or lost; 130 when a shard was interrupted), 2 for
reports that do not merge (not shard reports, different scenarios or plans, a shard twice).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from runner.errors import ExitCode, ReportWriteError
from runner.load.merge import MergeError, ShardReport, merge_results, parse_shard
from runner.reports import console, json_report, junit
from runner.reports.atomic import write_atomic
from runner.reports.masking import Masker

__all__ = ["add_parser", "read_shards", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "merge",
        help="merge shard reports (wsload run --shard K/N) into the report of the whole run",
        description="Combine the JSON reports of the shards of one run (wsload run FILE --shard K/N) "
        "into one report, exactly: counts, return codes, error groups, latency histograms and the "
        "per-second series added; thresholds evaluated again on the merged result. Exit 0 passed, "
        "1 failed or incomplete (a shard missing or lost), 2 reports that do not merge, 130 a "
        "shard was interrupted.",
    )
    parser.add_argument("reports", nargs="+", metavar="SHARD.json", help="JSON reports of the shards")
    parser.add_argument("-o", "--output", metavar="PATH", help="write the merged JSON report here")
    parser.add_argument("--html", dest="html_path", metavar="PATH", help="write the HTML report here")
    parser.add_argument("--junit", dest="junit_path", metavar="PATH", help="write the JUnit XML here")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the final verdict line")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every error group")
    parser.set_defaults(handler=run)
    return parser


def read_shards(paths: list[str]) -> list[ShardReport]:
    """Parse each file as a shard report; ``MergeError`` (exit 2) naming the file otherwise."""
    shards = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise MergeError(f"{path}: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MergeError(f"{path}: not a JSON file: {exc}") from exc
        if not isinstance(doc, dict):
            raise MergeError(f"{path}: not a wsload JSON report")
        shards.append(parse_shard(path, doc))
    return shards


def run(args: argparse.Namespace) -> int:
    """The ``merge`` command: read, merge, print, write; the merged verdict as the exit code."""
    from runner.load import load_summary_line

    result = merge_results(read_shards(args.reports))
    masker = Masker()  # shard reports are masked already
    sys.stdout.write(load_summary_line(result) + "\n")
    if args.quiet:
        sys.stdout.write(console.verdict_line(result) + "\n")
    else:
        sys.stdout.write(console.render(result, masker, verbose=args.verbose))
    sys.stdout.flush()
    jobs: list[tuple[str, Any]] = []
    if args.output:
        jobs.append((args.output, lambda: json_report.render(result, masker)))
    if args.junit_path:
        jobs.append((args.junit_path, lambda: junit.render([result], masker)))
    if args.html_path:
        from runner.reports import html

        jobs.append((args.html_path, lambda: html.render(result, masker)))
    failed = False
    for path, render in jobs:
        try:
            write_atomic(path, render())
        except ReportWriteError as exc:
            print(f"wsload: {exc}", file=sys.stderr)
            failed = True
    if failed:
        return int(ExitCode.COULD_NOT_RUN)
    if result.interrupted:
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.PASSED if result.passed else ExitCode.FAILED)
