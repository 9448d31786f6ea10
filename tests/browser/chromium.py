"""Open a report in headless Chromium: the page's render status (written into ``<body>`` by its own
script) from ``--dump-dom``, and a screenshot as a test artefact. No Python browser driver needed."""

from __future__ import annotations

import html
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import scaled

CHROMIUM = os.environ.get("WSLOAD_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_BODY = re.compile(r"<body\b([^>]*)>")
_ATTR = re.compile(r'([\w-]+)="([^"]*)"')
_CHART = re.compile(r'<div class="chart" id="chart-([\w-]+)"([^>]*)>')


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"headless Chromium not found at {CHROMIUM}: install the distribution's package "
            "(apt-get install chromium, as .ci/run does) or set WSLOAD_CHROMIUM"
        )
    with tempfile.TemporaryDirectory(prefix="wsload-chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=scaled(60),
            check=False,
        )


def render_status(page: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The ``<body>`` attributes after the page's scripts ran, and each chart element's attributes."""
    proc = _chromium("--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri())
    match = _BODY.search(proc.stdout)
    assert match is not None, f"chromium dumped no page (rc {proc.returncode}): {proc.stderr[-2000:]}"
    body = {k: html.unescape(v) for k, v in _ATTR.findall(match.group(1))}
    charts = {cid: dict(_ATTR.findall(attrs)) for cid, attrs in _CHART.findall(proc.stdout)}
    return body, charts


def screenshot(page: Path, name: str, height: int = 2400) -> Path:
    """Save a screenshot of ``page`` under ``test-artifacts/`` and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    out.unlink(missing_ok=True)
    proc = _chromium(f"--window-size=1280,{height}", f"--screenshot={out}", page.resolve().as_uri())
    assert out.exists() and out.stat().st_size > 10_000, (
        f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    )
    return out


def print_pdf(page: Path, name: str) -> tuple[Path, int]:
    """Print ``page`` to a PDF under ``test-artifacts/`` (print styles apply); its path and page count."""
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    out.unlink(missing_ok=True)
    proc = _chromium("--no-pdf-header-footer", f"--print-to-pdf={out}", page.resolve().as_uri())
    assert out.exists(), f"no PDF (rc {proc.returncode}): {proc.stderr[-2000:]}"
    data = out.read_bytes()
    assert data.startswith(b"%PDF"), data[:20]
    return out, len(re.findall(rb"/Type\s*/Page\b", data))
