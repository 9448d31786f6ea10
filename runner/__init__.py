"""wsload: YAML-driven WebSocket scenario runner and load tester.

In-process use: ``runner.loader.load_scenario(path)`` gives the frozen scenario and
``runner.run.run(RunRequest(scenario, ...))`` runs it (as ``wsload run`` does); docs/design.md
maps the layers.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
