"""Scenario text -> ``Scenario``, in order: YAML with positions (``runner.scenario.source``) ->
``${ENV}`` substitution -> the secrets known before the run -> JSON Schema
(``runner.scenario.validation``) -> the semantic checks a schema cannot express, done while
building the model (``builder``). Every problem is reported at once, masked of every secret
known by then, as one ``ScenarioError``."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path as FsPath

from runner.errors import Problem, ScenarioError
from runner.loader.builder import Builder
from runner.loader.environment import substitute_env
from runner.loader.populations import build_plan
from runner.loader.secrets_scan import static_secrets
from runner.scenario import model as m
from runner.scenario.secrets import SecretRegistry, SecretText, mask_excerpt, userinfo_secrets
from runner.scenario.source import parse_yaml, read_source
from runner.scenario.validation import schema_problems

__all__ = ["load_scenario", "load_scenario_text"]


def load_scenario(
    path: str | os.PathLike[str],
    *,
    variables: Mapping[str, str] | None = None,
    target: str | None = None,
) -> m.Scenario:
    """Load, validate and build the scenario in ``path``; ``ScenarioError`` lists every problem.

    ``variables`` are ``--var`` values (they override the file's; a ``SecretText`` value, from
    ``--secret-var``, is a secret variable); ``target`` is ``--target``.
    """
    file = str(path)
    text = read_source(path, file)  # at most 16 MiB + 1 byte is read, whatever the file is
    return load_scenario_text(
        text, file=file, variables=variables, target=target, base_dir=FsPath(path).parent
    )


def load_scenario_text(
    text: str,
    file: str = "<scenario>",
    *,
    variables: Mapping[str, str] | None = None,
    target: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    population: bool = False,
) -> m.Scenario:
    """Like ``load_scenario`` for text in memory; files it names resolve against ``base_dir``.
    ``population``: the file is a plan's population, so it may not be a plan itself.

    ``environ`` replaces ``os.environ`` for ``${ENV}`` lookups (tests use it). Every problem's
    message and quoted lines are masked with the secrets known by then (``${ENV}`` values,
    sensitive header literals, userinfo, secret variables, private keys): a validation error is
    printed, and must not show them.
    """
    cli_vars = dict(variables or {})
    secrets: set[str] = {v for v in cli_vars.values() if isinstance(v, SecretText)}
    secrets.update(userinfo_secrets(target or ""))
    try:
        return _load_text(text, file, cli_vars, target, base_dir, environ, secrets, population)
    except ScenarioError as exc:
        registry = SecretRegistry(secrets)
        raise ScenarioError(
            [
                dataclasses.replace(
                    p, message=registry.mask(p.message), excerpt=mask_excerpt(p.excerpt, registry)
                )
                for p in exc.problems
            ]
        ) from None


def _load_text(
    text: str,
    file: str,
    variables: dict[str, str],
    target: str | None,
    base_dir: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None,
    secrets: set[str],
    population: bool = False,
) -> m.Scenario:
    """``load_scenario_text``'s work; ``secrets`` is filled as they are found."""
    data, source = parse_yaml(text, file)
    if population and isinstance(data, dict) and "populations" in data:
        # Before its populations are loaded: a plan naming itself would load itself forever.
        message = (
            f"{file} is a plan itself (it has populations); a plan's populations are scenarios: "
            "plans do not nest"
        )
        raise ScenarioError([source.problem(("populations",), message, key=True)])
    env = os.environ if environ is None else environ
    problems: list[Problem] = []
    data = substitute_env(data, (), env, secrets, problems, source)
    secrets.update(static_secrets(data, variables, target))
    problems.extend(schema_problems(data, source))

    def builder(*, tolerant: bool = False) -> Builder:
        assert isinstance(data, dict)  # the schema requires a mapping
        return Builder(source, data, variables, target, FsPath(base_dir or "."), secrets, tolerant=tolerant)

    if problems:
        raise ScenarioError(problems + _problems_beside(problems, builder))
    assert isinstance(data, dict)  # the schema requires a mapping
    if "populations" in data:
        return _plan(data, builder(), variables, target, base_dir)
    built = builder()
    scenario = built.build()
    if built.problems:
        raise ScenarioError(built.problems)
    return scenario


def _plan(
    data: dict[str, object],
    built: Builder,
    variables: dict[str, str],
    target: str | None,
    base_dir: str | os.PathLike[str] | None,
) -> m.Scenario:
    """A plan of populations (``runner.loader.populations``); each population's file is loaded
    here, so its problems name its own file and line."""

    def load_file(path: FsPath, values: Mapping[str, object], target: str | None) -> m.Scenario:
        text = read_source(path, str(path))
        return load_scenario_text(
            text,
            str(path),
            variables=values,  # type: ignore[arg-type]
            target=target,
            base_dir=path.parent,
            population=True,
        )

    plan = build_plan(
        built.doc,
        data,
        base_dir=FsPath(base_dir or "."),
        variables=variables,
        target_override=target,
        load_file=load_file,
        masked_source=built.masked_source(),
    )
    if plan is None or built.doc.problems:
        raise ScenarioError(built.doc.problems)
    return plan


def _problems_beside(schema: list[Problem], make_builder: Callable[..., Builder]) -> list[Problem]:
    """The semantic problems of the parts the schema found no fault in, so a user sees every
    mistake at once (an undeclared connection beside a misspelled step), not one round each.

    The builder expects a schema-valid document; on an invalid one it may trip over the broken
    part, so whatever it raises is dropped (the schema problems already say what is wrong), and
    its problems inside or around a broken part are dropped as consequences of that part.
    """
    try:
        builder = make_builder(tolerant=True)
    except Exception:  # the document is too broken to build at all: the schema problems say why
        return []
    with contextlib.suppress(Exception):  # see above: the schema problems stand on their own
        builder.build()
    broken = [p.path for p in schema]
    return [p for p in builder.problems if not any(_nested(p.path, b) for b in broken)]


def _nested(a: str, b: str) -> bool:
    """Whether one dotted path (``steps[2].read``) lies inside the other, or they are the same."""
    short, long = sorted((a, b), key=len)
    return short == "" or (long.startswith(short) and (len(long) == len(short) or long[len(short)] in ".["))
