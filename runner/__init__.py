"""wsload: YAML-driven WebSocket scenario runner and load tester.

The public names are re-exported here; everything else is private to the package.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
