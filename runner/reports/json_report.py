"""The JSON report: ``runner.results.codec.encode`` with secrets masked (see
``schemas/report.schema.json``)."""

from __future__ import annotations

import json

from runner.reports.masking import Masker
from runner.results.codec import encode
from runner.results.result import RunResult

__all__ = ["document", "render"]


def document(result: RunResult, masker: Masker | None = None) -> dict[str, object]:
    doc = encode(result)
    if masker is None:
        return doc
    masked: dict[str, object] = masker.tree(doc)
    return masked


def render(result: RunResult, masker: Masker | None = None) -> str:
    return json.dumps(document(result, masker), indent=2, ensure_ascii=False) + "\n"
