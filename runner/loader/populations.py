"""A plan (``populations:`` instead of ``steps:``): several scenario files run together, each by a
population of its own with its own load, in one run with one report.

Each population's file is loaded as any scenario is (its problems name its own file and line);
the plan then gives it its name, its load (``load:`` here replaces the file's; ``weight:`` takes a
share of the plan's own closed-model load) and any more thresholds. The plan's own thresholds
are run-wide: every population together, a step named ``POPULATION/STEP`` (the name the run's
step table gives it). The plan's ``load`` becomes what the run as a whole needs: the
users of every population at their peaks, the longest duration, the workers.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path as FsPath
from typing import Any

from runner.errors import ScenarioError
from runner.loader.connections import check_target, target_problem
from runner.loader.document import Document
from runner.loader.load_section import load_spec, threshold_at, threshold_list
from runner.scenario import model as m
from runner.scenario.plan import peak_vus, plan_duration
from runner.scenario.source import Path

__all__ = ["LoadFile", "build_plan", "split_by_weight"]

#: Loads one population's file: (path, variables, target) -> its scenario (``ScenarioError``).
LoadFile = Callable[[FsPath, Mapping[str, Any], "str | None"], m.Scenario]

#: Keys of ``load:`` that shape a load (the others say what a plan's whole run shares).
_SHAPE = frozenset({"vus", "rate", "stages", "duration", "iterations", "ramp_up", "max_vus"})

#: Top-level keys that belong in a population's file, not in the plan.
_NOT_IN_A_PLAN = ("steps", "connections", "data", "defaults", "secrets")


def _walk(steps: Sequence[m.StepBase]) -> Iterator[m.StepBase]:
    for step in steps:
        yield step
        for block in step.blocks():
            yield from _walk(block)


def split_by_weight(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` users shared by ``weights`` (largest remainder): the shares add up to ``total``
    and each differs from its exact share by less than one."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    shares = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _weighted(load: m.LoadSpec, share: int, of: int) -> m.LoadSpec:
    """The plan's closed-model ``load`` scaled to ``share`` of its ``of`` users (stages too)."""
    stages = tuple(dataclasses.replace(s, target=s.target * share / of) for s in load.stages)
    return dataclasses.replace(load, vus=share, stages=stages, workers=None, source_addresses=())


def build_plan(
    doc: Document,
    data: dict[str, Any],
    *,
    base_dir: FsPath,
    variables: Mapping[str, Any],
    target_override: str | None,
    load_file: LoadFile,
    masked_source: str,
) -> m.Scenario | None:
    """The plan in ``data`` (schema-valid); its problems go to ``doc`` (None when there are
    some), a population file's own problems are raised as they are (``ScenarioError``)."""
    for key in _NOT_IN_A_PLAN:
        if key in data:
            doc.problem(
                (key,),
                f"'{key}' belongs in a population's scenario file: a plan lists 'populations' "
                "instead, each naming the file that has its steps",
                key=True,
            )
    target = target_override if target_override is not None else data.get("target")
    # What the populations' files are loaded with: not a target already refused at the plan's
    # line, which each file would otherwise refuse again as if it came from the command line.
    handed_on = target
    if target is not None:
        check_target(doc, target, () if target_override is not None else ("target",))
        if target_problem(target) is not None:
            handed_on = None
    raw_load = data.get("load")
    shaped = raw_load is not None and bool(_SHAPE & set(raw_load))
    plan_load = None
    if raw_load is not None:
        # Without a shape the plan's load says only what the whole run shares (workers, source
        # addresses): it is not a load of its own, and needs no duration.
        plan_load = load_spec(doc, raw_load if shaped else {**raw_load, "iterations": 1}, ("load",))
    entries: list[dict[str, Any]] = data["populations"]
    weights = [float(e["weight"]) for e in entries if "weight" in e and "load" not in e]
    if weights and (plan_load is None or not shaped or plan_load.model != "closed"):
        doc.problem(
            ("load",) if plan_load is not None else ("populations",),
            "'weight' shares the plan's users: give the plan a closed-model 'load' (vus, or "
            "stages of users) for the weights to share",
            key=plan_load is not None,
        )
    shares: list[int] = []
    if weights and plan_load is not None and shaped and plan_load.model == "closed":
        users = peak_vus(plan_load)
        shares = split_by_weight(users, weights)
    plan_vars = dict(data.get("variables") or {})
    found: list[m.Scenario] = []
    names: dict[str, int] = {}
    unloaded: set[str] = set()  # populations whose file did not load (their problems stand)
    failures: list[ScenarioError] = []
    weighted = iter(shares)
    for i, entry in enumerate(entries):
        path: Path = ("populations", i)
        file = FsPath(entry["file"])
        if not file.is_absolute():
            file = base_dir / file
        name = entry.get("name") or file.stem
        if name in names:
            doc.problem(
                (*path, "name") if "name" in entry else (*path, "file"),
                f"population '{name}' is named twice (also population {names[name] + 1}); give "
                "each its own 'name'",
            )
            continue
        names[name] = i
        if not file.is_file():
            doc.problem((*path, "file"), f"population '{name}': no scenario file {str(file)!r}")
            unloaded.add(name)
            continue
        own_vars = {**plan_vars, **(entry.get("variables") or {}), **variables}
        try:
            scenario = load_file(file, own_vars, handed_on)
        except ScenarioError as exc:
            failures.append(exc)
            unloaded.add(name)
            continue
        load = _population_load(doc, entry, path, name, scenario, plan_load, weighted)
        if load is None:
            continue
        steps = list(_walk(scenario.steps))
        extra = threshold_list(
            doc,
            entry.get("thresholds") or [],
            step_names={s.name for s in steps if not s.blocks()},
            kinds={s.kind for s in steps if not s.blocks()},
            blocks={s.name: s.kind for s in steps if s.blocks()},
            path=(*path, "thresholds"),
        )
        found.append(
            dataclasses.replace(
                scenario,
                name=name,
                load=load,
                thresholds=scenario.thresholds + extra,
                seed=data.get("seed", scenario.seed),
            )
        )
    if failures:
        raise ScenarioError([p for exc in failures for p in exc.problems] + doc.problems)
    targets = {p.target for p in found}
    if target is None and len(targets) > 1:
        doc.problem(
            ("populations",),
            "the populations' files name different targets ("
            + ", ".join(sorted(str(t) for t in targets))
            + "): a run has one; give the plan a 'target' (or --target)",
            key=True,
        )
    if target is None and targets:
        target = next(iter(targets))
    measured = [(p.name, s) for p in found for s in _walk(p.steps) if not s.blocks()]
    step_names = {f"{name}/{s.name}" for name, s in measured}
    kinds = {s.kind for _, s in measured}
    thresholds = tuple(
        t
        for i, item in _own_population_thresholds(doc, data.get("thresholds") or [], set(names), unloaded)
        if (t := threshold_at(doc, item, ("thresholds", i), step_names=step_names, kinds=kinds)) is not None
    )
    if doc.problems:
        return None
    found = [dataclasses.replace(p, target=target) for p in found]
    return m.Scenario(
        name=data.get("name") or FsPath(doc.source.file).stem,
        file=doc.source.file,
        steps=(),
        connections=m.frozen_map(),  # type: ignore[arg-type]
        description=data.get("description", ""),
        tags=tuple(data.get("tags") or ()),
        seed=data.get("seed"),
        target=target,
        variables=m.frozen_map(plan_vars),
        load=_whole(found, plan_load),
        thresholds=thresholds,
        secrets=frozenset(s for s in doc.secrets if s).union(*(p.secrets for p in found)),
        source=masked_source,
        populations=tuple(found),
    )


_POPULATION_OF = re.compile(r"\s*([A-Za-z0-9_][A-Za-z0-9_.-]*)/")


def _own_population_thresholds(
    doc: Document, items: list[Any], names: set[str], unloaded: set[str]
) -> list[tuple[int, Any]]:
    """The plan's thresholds to parse: one naming ``POPULATION/...`` of a population that is not
    in the plan is a problem saying so (not a did-you-mean of another population's step); one of a
    population whose file did not load is left to that file's problems."""
    out: list[tuple[int, Any]] = []
    for i, item in enumerate(items):
        expr = item if isinstance(item, str) else item.get("threshold", "")
        match = _POPULATION_OF.match(expr) if isinstance(expr, str) else None
        if match is None or match.group(1) in names - unloaded:
            out.append((i, item))
        elif match.group(1) not in names:
            path: Path = ("thresholds", i) if isinstance(item, str) else ("thresholds", i, "threshold")
            doc.problem(
                path,
                f"threshold '{expr}' names population '{match.group(1)}', which this plan does not have "
                f"(populations: {', '.join(sorted(names)) or 'none'})",
            )
    return out


def _population_load(
    doc: Document,
    entry: dict[str, Any],
    path: Path,
    name: str,
    scenario: m.Scenario,
    plan_load: m.LoadSpec | None,
    weighted: Iterator[int],
) -> m.LoadSpec | None:
    """The population's load: its entry's ``load``, its ``weight`` of the plan's, or its file's."""
    if "load" in entry:
        raw = entry["load"]
        for key in ("workers", "source_addresses"):
            if key in raw:
                doc.problem(
                    (*path, "load", key),
                    f"'{key}' is the whole run's: set it in the plan's own 'load', not a population's",
                    key=True,
                )
        if "weight" in entry:
            doc.problem((*path, "weight"), "give a population 'load' or 'weight', not both", key=True)
        return load_spec(doc, raw, (*path, "load"))
    if "weight" in entry:
        share = next(weighted, None)
        if share is None or plan_load is None:
            return None  # the plan's missing load is already a problem
        if share == 0:
            doc.problem(
                (*path, "weight"),
                f"population '{name}': its weight gives it 0 of the plan's {peak_vus(plan_load)} users; "
                "raise the plan's users or this weight",
            )
            return None
        return _weighted(plan_load, share, peak_vus(plan_load))
    if scenario.load is None:
        doc.problem(
            (*path, "file"),
            f"population '{name}' has no load: give it 'load:' here (or in {scenario.file}), or a "
            "'weight' of the plan's 'load'",
        )
        return None
    return dataclasses.replace(scenario.load, workers=None, source_addresses=())


def _whole(populations: Sequence[m.Scenario], plan_load: m.LoadSpec | None) -> m.LoadSpec:
    """What the run as a whole needs: every population's users at their peaks (closed model,
    for the limits and the workers), the longest duration, the longest grace period."""
    loads = [p.load for p in populations if p.load is not None]
    durations = [plan_duration(x) for x in loads]
    return m.LoadSpec(
        model="closed",
        vus=max(1, sum(peak_vus(x) for x in loads)),
        duration_s=None if any(d is None for d in durations) else max(d or 0.0 for d in durations),
        iterations=None if all(d is not None for d in durations) else 1,
        workers=plan_load.workers if plan_load is not None else None,
        source_addresses=plan_load.source_addresses if plan_load is not None else (),
        graceful_stop_s=max([x.graceful_stop_s for x in loads] or [5.0]),
    )
