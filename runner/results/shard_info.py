"""What a shard report carries beside the usual report so ``wsload merge`` is exact
(``settings.shard`` of the report; ``runner.load.merge`` reads it, ``runner.results.codec``
writes and reads it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.scenario.model import LoadSpec, Threshold

__all__ = ["ShardInfo"]


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard of a run: which (``index`` 1-based of ``count``), of what (the scenario's file,
    name and digest, the plan after overrides, its thresholds as parsed), from when
    (``start_unix_ns``: the wall-clock instant the plan started), whether its worker was lost,
    and everything it measured.

    ``recorder`` is the shard's whole ``RunRecorder.serialize()``: the recorders' own mergeable
    form (histograms included), which ``RunRecorder.merge`` adds up exactly; the report's own
    figures are percentiles, which cannot be merged.
    """

    index: int
    count: int
    scenario_file: str
    scenario_name: str
    scenario_sha256: str
    plan: LoadSpec
    thresholds: tuple[Threshold, ...]
    start_unix_ns: int
    recorder: Mapping[str, Any]
    lost: bool = False
