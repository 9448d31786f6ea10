"""One module per subcommand, each with ``add_parser(subparsers)`` and ``run(args) -> int``.

The CLI discovers them through ``COMMANDS``; adding a command touches its module and this list.

A command module imports the layers it drives (loader, load, reports) inside the function that
runs the command, not at the top: the parser imports every command module, and ``import
runner.cli`` takes 37 ms where ``import runner.loader`` takes 277 ms (jsonschema, YAML, the
templates; best of 5, Python 3.11 on the 2-core CI machine) — ``wsload --help``, ``wsload
metrics`` and every usage error answer without it.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = (
    "run",
    "validate",
    "schema",
    "metrics",
    "serve",
    "report",
    "merge",
    "import_har",
    "record",
)
