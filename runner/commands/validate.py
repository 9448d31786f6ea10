"""``wsload validate FILE...``: check scenario files and print every problem (exit 0 or 2)."""

from __future__ import annotations

import argparse

from runner.errors import ExitCode, ScenarioError, UsageError
from runner.loader import load_scenario
from runner.scenario.model import Scenario

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``validate``."""
    parser = subparsers.add_parser(
        "validate",
        help="check scenario files and print every problem",
        description="Check scenario files against the schema and the semantic rules. Prints 'OK FILE' "
        "for each valid file and every problem of the others as FILE:LINE:COL: path: message. "
        "Exit 0 when all are valid, 2 otherwise.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable as 'wsload run' would pass it (so templates using it validate)",
    )
    parser.add_argument(
        "--secret-var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a secret variable as 'wsload run --secret-var' would pass it",
    )
    parser.add_argument("--target", default=None, help="base URL as 'wsload run --target' would set it")
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only, no OK lines")
    parser.set_defaults(handler=run)


def _variables(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--var needs NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Validate each file; problems go to stdout so they can be piped and grepped. A bad
    ``--target`` is the command line's mistake (exit 2 before any file is read); a ``--var`` no
    valid file uses is warned about on stderr."""
    from runner.commands.run import check_target_option, warn_unused_vars
    from runner.scenario.variables import parse_vars

    variables = _variables(args.var)
    check_target_option(args.target, env="")
    secret = parse_vars([], args.secret_var)
    clash = sorted(secret.keys() & variables.keys())
    if clash:
        raise UsageError(f"variable '{clash[0]}' is given both with --var and with --secret-var")
    variables.update(secret)
    failed = False
    loaded: list[Scenario] = []
    for file in args.files:
        try:
            loaded.append(load_scenario(file, variables=variables, target=args.target))
        except ScenarioError as exc:
            failed = True
            print(exc)
            continue
        if not args.quiet:
            print(f"OK {file}")
    warn_unused_vars(list(variables), loaded)
    return int(ExitCode.INVALID if failed else ExitCode.PASSED)
