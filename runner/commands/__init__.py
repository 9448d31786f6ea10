"""One module per subcommand, each with ``add_parser(subparsers)`` and ``run(args) -> int``.

The CLI discovers them through ``COMMANDS``; adding a command touches its module and this list.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = ("run", "validate", "schema", "metrics", "serve", "report", "merge")
