"""The live dashboard of a run (``wsload run --dashboard``): ``runner.dashboard.server``."""

from runner.dashboard.server import Dashboard, DashboardError, parse_address

__all__ = ["Dashboard", "DashboardError", "parse_address"]
