"""Helpers for the report tests: headless Chromium and synthetic multi-second results."""
