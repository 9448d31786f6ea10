"""``python -m runner``: the same as the ``wsload`` command."""

from runner.cli import entry

entry()
