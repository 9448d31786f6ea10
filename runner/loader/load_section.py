"""A scenario's ``load:`` (how many users or starts, for how long, ramped how) and its
``thresholds:`` (what the load run must meet). Absurd values (more users than ``MAX_VUS``, a
load that runs nothing, two models mixed) are problems at load, before any connection opens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.checks.thresholds import parse_threshold
from runner.errors import InvalidThreshold
from runner.loader.document import Document
from runner.scenario import model as m
from runner.scenario.model import MAX_ITERATIONS, MAX_VUS, MAX_WORKERS
from runner.scenario.source import Path
from runner.scenario.units import UnitError, parse_rate

__all__ = ["load_spec", "threshold_at", "threshold_list"]


def load_spec(doc: Document, raw: dict[str, Any], path: Path) -> m.LoadSpec:
    """The ``load:`` section: the closed model (``vus``) or the open one (``rate``), by stages
    or flat, and when it stops."""
    _check_limits(doc, raw, path)
    stages, kinds = _stages(doc, raw, path)
    rate = _rate(doc, raw["rate"], (*path, "rate")) if "rate" in raw else None
    is_open = rate is not None or kinds == {"rate"}
    if "vus" in raw and "rate" in raw:
        doc.problem((*path, "rate"), "give either 'vus' (closed model) or 'rate' (open model), not both")
    if not ({"duration", "iterations", "stages"} & set(raw)):
        doc.problem(path, "load needs 'duration', 'iterations' or 'stages' to know when to stop")
    duration = _optional_duration(doc, raw, path, "duration", None)
    if duration is not None and duration <= 0:
        doc.problem((*path, "duration"), "a load of duration 0 runs nothing; give a duration above 0")
    if rate is not None and rate <= 0 and not stages:
        doc.problem((*path, "rate"), "a rate of 0 starts nothing; give a rate above 0")
    if stages and (sum(st.duration_s for st in stages) <= 0 or max(st.target for st in stages) <= 0):
        doc.problem(
            (*path, "stages"), "these stages run nothing (no time, or no users or starts in any stage)"
        )
    first, most = _failure_pause(doc, raw, path)
    return m.LoadSpec(
        model="open" if is_open else "closed",
        vus=int(raw.get("vus", 1)),
        duration_s=duration,
        iterations=raw.get("iterations"),
        ramp_up_s=_optional_duration(doc, raw, path, "ramp_up", 0.0) or 0.0,
        stages=tuple(stages),
        rate=rate,
        max_vus=raw.get("max_vus"),
        workers=raw.get("workers"),
        source_addresses=tuple(raw.get("source_addresses") or ()),
        graceful_stop_s=_optional_duration(doc, raw, path, "graceful_stop", 5.0) or 0.0,
        think_time_s=_optional_duration(doc, raw, path, "think_time", 0.0) or 0.0,
        pace_s=_pace(doc, raw, path, is_open),
        hold=bool(raw.get("hold", False)),
        failure_pause_first_s=first,
        failure_pause_max_s=most,
    )


def _check_limits(doc: Document, raw: dict[str, Any], path: Path) -> None:
    """More users, iterations or worker processes than one machine should be asked for."""
    for key in ("vus", "max_vus"):
        if raw.get(key, 0) > MAX_VUS:
            doc.problem((*path, key), f"{raw[key]} virtual users is more than {MAX_VUS:,}")
    if raw.get("iterations", 0) > MAX_ITERATIONS:
        doc.problem(
            (*path, "iterations"),
            f"{raw['iterations']} iterations is more than {MAX_ITERATIONS:,}; use a duration",
        )
    if raw.get("workers", 0) > MAX_WORKERS:
        doc.problem((*path, "workers"), f"{raw['workers']} worker processes is more than {MAX_WORKERS}")


def _stages(doc: Document, raw: dict[str, Any], path: Path) -> tuple[list[m.Stage], set[str]]:
    """The ``stages`` and which models they use (``vus``, ``rate``): one only."""
    stages: list[m.Stage] = []
    kinds: set[str] = set()
    for i, st in enumerate(raw.get("stages") or []):
        spath = (*path, "stages", i)
        d = doc.duration(st["duration"], (*spath, "duration"))
        if "vus" in st:
            kinds.add("vus")
            if st["vus"] > MAX_VUS:
                doc.problem((*spath, "vus"), f"{st['vus']} virtual users is more than {MAX_VUS:,}")
            stages.append(m.Stage(d, float(st["vus"])))
        else:
            kinds.add("rate")
            stages.append(m.Stage(d, _rate(doc, st["rate"], (*spath, "rate"))))
    if len(kinds) > 1:
        doc.problem((*path, "stages"), "stages mix 'vus' and 'rate'; use one model for all stages")
    return stages, kinds


def _optional_duration(
    doc: Document, raw: dict[str, Any], path: Path, key: str, default: float | None
) -> float | None:
    """``raw[key]`` in seconds, or ``default`` when it is not given."""
    return doc.duration(raw[key], (*path, key)) if key in raw else default


def _failure_pause(doc: Document, raw: dict[str, Any], path: Path) -> tuple[float, float]:
    """The pause after a failed iteration: (first, max), doubling in between; one value is both."""
    first, most = 0.05, 1.0
    if "failure_pause" in raw:
        fp = raw["failure_pause"]
        fpath = (*path, "failure_pause")
        if isinstance(fp, dict):
            first = doc.duration(fp["first"], (*fpath, "first"))
            most = doc.duration(fp["max"], (*fpath, "max"))
            if most < first:
                doc.problem((*fpath, "max"), "max is shorter than first")
        else:
            first = most = doc.duration(fp, fpath)
    return first, most


def _pace(doc: Document, raw: dict[str, Any], path: Path, is_open: bool) -> float | None:
    """``pace`` (start to start), which only the closed model has, and not beside ``think_time``."""
    if "pace" not in raw:
        return None
    pace = doc.duration(raw["pace"], (*path, "pace"))
    if is_open:
        doc.problem(
            (*path, "pace"),
            "pace is for the closed model (vus); the open model's rate sets when starts are due",
        )
    elif "think_time" in raw:
        doc.problem(
            (*path, "pace"),
            "give either 'pace' (start to start) or 'think_time' (end to start), not both",
        )
    elif pace <= 0:
        doc.problem((*path, "pace"), "a pace of 0 is no pace; leave it out to start each iteration at once")
    return pace


def _rate(doc: Document, value: object, path: Path) -> float:
    """Starts per second; an unparsable rate is a problem (0.0)."""
    try:
        return parse_rate(value)
    except UnitError as exc:
        doc.problem(path, str(exc))
        return 0.0


def threshold_list(
    doc: Document,
    items: list[Any],
    *,
    step_names: set[str],
    kinds: set[str],
    blocks: Mapping[str, str] | None = None,
    path: Path = ("thresholds",),
) -> tuple[m.Threshold, ...]:
    """The ``thresholds:`` section; an entry that does not parse is left out (its problem stands).
    ``blocks``: the names and kinds of block steps (-> their kind), whose steps are measured, not
    they: a threshold on one would always be "no data"."""
    found = (
        threshold_at(doc, item, (*path, i), step_names=step_names, kinds=kinds)
        for i, item in enumerate(items)
    )
    out = []
    for i, threshold in enumerate(found):
        if threshold is not None and blocks and threshold.subject in blocks:
            item = items[i]
            doc.problem(
                (*path, i) if isinstance(item, str) else (*path, i, "threshold"),
                f"'{threshold.subject}' is a block ({blocks[threshold.subject]}): the steps inside it are "
                "measured, not the block; put the threshold on one of them",
            )
        elif threshold is not None:
            out.append(threshold)
    return tuple(out)


def threshold_at(
    doc: Document, item: str | dict[str, Any], path: Path, *, step_names: set[str], kinds: set[str]
) -> m.Threshold | None:
    """One ``thresholds:`` entry (text, or a mapping with options); a step name or kind it
    names must exist in the scenario (``parse_threshold`` says so, positioned)."""
    expr = item if isinstance(item, str) else item["threshold"]
    epath = path if isinstance(item, str) else (*path, "threshold")
    options = {} if isinstance(item, str) else item
    try:
        return parse_threshold(
            expr,
            step_names=step_names,
            kinds=kinds,
            location=doc.location(epath),
            abort_on_fail=bool(options.get("abort_on_fail", False)),
            accept_no_data=options.get("no_data", "fail") == "pass",
        )
    except InvalidThreshold as exc:
        doc.problem(epath, str(exc))
        return None
