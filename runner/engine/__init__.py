"""The engine: virtual users running steps (``vu``), one module per step kind (``steps``), a run
once as a check (``check``), and the embedded-server target (``embedded``)."""

from __future__ import annotations

__all__: list[str] = []
