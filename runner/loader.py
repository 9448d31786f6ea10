"""Scenario files -> validated, frozen ``runner.model.Scenario``; every problem reported at once.

Order: YAML with positions (``yamlsource``) -> ``${ENV}`` substitution -> JSON Schema
(``validation``) -> the semantic checks a schema cannot express, done while building the model
(undeclared or unopened connections, unknown template variables, thresholds naming no step,
missing files, absurd values). Nothing downstream sees a raw dict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path as FsPath
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import jmespath
import regex
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from runner.checks.thresholds import parse_threshold
from runner.errors import InvalidThreshold, Problem, ScenarioError, UsageError
from runner.scenario import model as m
from runner.scenario.model import (
    MAX_DURATION_S,
    MAX_ITERATIONS,
    MAX_PAYLOAD_BYTES,
    MAX_REPEAT,
    MAX_VUS,
    MAX_WORKERS,
)
from runner.scenario.secrets import (
    SecretRegistry,
    SecretText,
    is_sensitive_header,
    mask_excerpt,
    userinfo_secrets,
    value_texts,
)
from runner.scenario.source import MAX_FILE_BYTES, Path, SourceMap, parse_yaml, read_limited, read_source
from runner.scenario.templates import JsonTemplate, Template, TemplateError
from runner.scenario.units import UnitError, parse_duration, parse_rate, parse_size
from runner.scenario.validation import closest, nested_steps, schema_problems
from runner.steps import KINDS
from runner.steps.base import StepNode

__all__ = [
    "BUILTIN_VARIABLES",
    "MAX_DURATION_S",
    "MAX_ITERATIONS",
    "MAX_PAYLOAD_BYTES",
    "MAX_REPEAT",
    "MAX_VUS",
    "MAX_WORKERS",
    "is_sensitive_header",
    "load_scenario",
    "load_scenario_text",
]

#: Names every template may use without declaring them.
BUILTIN_VARIABLES = frozenset({"vu", "iteration"})
#: A scenario file larger than this is refused before it is parsed.
MAX_SCENARIO_BYTES = MAX_FILE_BYTES

_ENV_RE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PEM_MARK = "-----BEGIN "


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
) -> m.Scenario:
    """Like ``load_scenario`` for text in memory; files it names resolve against ``base_dir``.

    ``environ`` replaces ``os.environ`` for ``${ENV}`` lookups (tests use it). Every problem's
    message and quoted lines are masked with the secrets known by then (``${ENV}`` values,
    sensitive header literals, userinfo, secret variables, private keys): a validation error is
    printed, and must not show them.
    """
    cli_vars = dict(variables or {})
    secrets: set[str] = {v for v in cli_vars.values() if isinstance(v, SecretText)}
    secrets.update(userinfo_secrets(target or ""))
    try:
        return _load_text(text, file, cli_vars, target, base_dir, environ, secrets)
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
) -> m.Scenario:
    """``load_scenario_text``'s work; ``secrets`` is filled as they are found."""
    data, source = parse_yaml(text, file)
    env = os.environ if environ is None else environ
    problems: list[Problem] = []
    data = _substitute_env(data, (), env, secrets, problems, source)
    secrets.update(_static_secrets(data, variables, target))
    problems.extend(schema_problems(data, source))

    def builder() -> _Builder:
        assert isinstance(data, dict)  # the schema requires a mapping
        return _Builder(source, data, variables, target, FsPath(base_dir or "."), secrets)

    if problems:
        raise ScenarioError(problems + _problems_beside(problems, builder))
    built = builder()
    scenario = built.build()
    if built.problems:
        raise ScenarioError(built.problems)
    return scenario


def _problems_beside(schema: list[Problem], make_builder: Callable[[], _Builder]) -> list[Problem]:
    """The semantic problems of the parts the schema found no fault in, so a user sees every
    mistake at once (an undeclared connection beside a misspelled step), not one round each.

    The builder expects a schema-valid document; on an invalid one it may trip over the broken
    part, so whatever it raises is dropped (the schema problems already say what is wrong), and
    its problems inside or around a broken part are dropped as consequences of that part.
    """
    try:
        builder = make_builder()
    except Exception:  # the document is too broken to build at all: the schema problems say why
        return []
    builder.tolerant = True
    with contextlib.suppress(Exception):  # see above: the schema problems stand on their own
        builder.build()
    broken = [p.path for p in schema]
    return [p for p in builder.problems if not any(_nested(p.path, b) for b in broken)]


def _nested(a: str, b: str) -> bool:
    """Whether one dotted path (``steps[2].read``) lies inside the other, or they are the same."""
    short, long = sorted((a, b), key=len)
    return short == "" or (long.startswith(short) and (len(long) == len(short) or long[len(short)] in ".["))


def _substitute_env(
    value: object,
    path: Path,
    env: Mapping[str, str],
    secrets: set[str],
    problems: list[Problem],
    source: SourceMap,
) -> object:
    """Replace ``${NAME}`` in every string by the environment's value (``$${NAME}`` stays literal)."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(1):
                return match.group(0)[1:]
            name = match.group(2)
            if name not in env:
                problems.append(source.problem(path, f"environment variable '{name}' is not set"))
                return ""
            if env[name]:
                secrets.add(env[name])
            return env[name]

        return _ENV_RE.sub(replace, value)
    if isinstance(value, list):
        return [_substitute_env(v, (*path, i), env, secrets, problems, source) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _substitute_env(v, (*path, k), env, secrets, problems, source) for k, v in value.items()}
    return value


def _template_names(text: str) -> frozenset[str]:
    """The variables a template reads (none when it does not compile: that is reported elsewhere)."""
    try:
        return Template(text).names
    except TemplateError:
        return frozenset()


def _userinfo_names(url: str) -> frozenset[str]:
    """The variables a URL template reads in its userinfo (``ws://{{ user }}:{{ pw }}@host/``)."""
    rest = url.partition("://")[2]
    info, at, _ = rest.partition("/")[0].rpartition("@")
    return _template_names(info) if at else frozenset()


def _secret_header_names(spec: Mapping[str, Any]) -> set[str]:
    """Lower-case names of a connection's headers whose values are secret: by their name, or
    listed in ``secretHeaders`` (tolerant of a document the schema has not checked yet)."""
    headers = spec.get("headers")
    marked = spec.get("secretHeaders")
    names = {str(n).lower() for n in marked if isinstance(n, str)} if isinstance(marked, list) else set()
    if isinstance(headers, dict):
        names.update(str(n).lower() for n in headers if is_sensitive_header(str(n)))
    return names


def _connections(data: object) -> list[Mapping[str, Any]]:
    connections = data.get("connections") if isinstance(data, dict) else None
    if not isinstance(connections, dict):
        return []
    return [spec for spec in connections.values() if isinstance(spec, dict)]


def _secret_names(data: object, cli_vars: Mapping[str, str]) -> set[str]:
    """Variables (and captures) whose values are secret: listed under ``secrets:``, given with
    ``--secret-var``, or read by a secret header's template or a URL's userinfo. Built-ins
    (``vu``, ``iteration``) are counters and never secret."""
    names = {n for n, v in cli_vars.items() if isinstance(v, SecretText)}
    listed = data.get("secrets") if isinstance(data, dict) else None
    if isinstance(listed, list):
        names.update(n for n in listed if isinstance(n, str))
    for spec in _connections(data):
        secret_headers = _secret_header_names(spec)
        headers = spec.get("headers")
        for hname, hvalue in headers.items() if isinstance(headers, dict) else ():
            if isinstance(hvalue, str) and str(hname).lower() in secret_headers:
                names |= _template_names(hvalue)
        if isinstance(spec.get("url"), str):
            names |= _userinfo_names(spec["url"])
    return names - BUILTIN_VARIABLES


def _static_secrets(data: object, cli_vars: Mapping[str, str], target: str | None) -> set[str]:
    """Every secret value known before the run: secret headers' literal values, userinfo in the
    target and the URLs, inline private keys, and the values of secret variables. Read from the
    raw document, so even a file the schema rejects has its secrets masked in the errors."""
    found: set[str] = set()
    declared = data.get("variables") if isinstance(data, dict) else None
    variables: dict[str, object] = dict(declared) if isinstance(declared, dict) else {}
    variables.update(cli_vars)
    for name in _secret_names(data, cli_vars):
        if name in variables:
            found.update(map(str, value_texts(variables[name])))
    for url in (target, data.get("target") if isinstance(data, dict) else None):
        if isinstance(url, str):
            found.update(userinfo_secrets(url))
    for spec in _connections(data):
        if isinstance(spec.get("url"), str):
            found.update(userinfo_secrets(spec["url"]))
        secret_headers = _secret_header_names(spec)
        headers = spec.get("headers")
        for hname, hvalue in headers.items() if isinstance(headers, dict) else ():
            if str(hname).lower() in secret_headers:
                found.add(hvalue if isinstance(hvalue, str) else json.dumps(hvalue, default=str))
        key = (
            (spec.get("sslConfig") or {}).get("privateKey")
            if isinstance(spec.get("sslConfig"), dict)
            else None
        )
        if isinstance(key, dict) and isinstance(key.get("key"), str):
            found.add(key["key"])
    return found


T = TypeVar("T")


class _Builder:
    """Builds the model from schema-valid data, collecting every semantic problem on the way."""

    def __init__(
        self,
        source: SourceMap,
        data: dict[str, Any],
        cli_vars: dict[str, str],
        target: str | None,
        base_dir: FsPath,
        secrets: set[str],
    ) -> None:
        self.source = source
        self.tolerant = False  # True: the schema rejected the document; check what still stands
        self.data = data
        self.cli_vars = cli_vars
        self.target_override = target
        self.base_dir = base_dir
        self.secrets = secrets
        self.problems: list[Problem] = []
        variables = dict(data.get("variables") or {})
        variables.update((name, str(value)) for name, value in cli_vars.items())  # SecretText: a str
        self.variables = variables
        #: Variables and captures whose values are secret (a capture of one is registered when made).
        self.secret_names = _secret_names(data, cli_vars)
        self.known: set[str] = set(variables) | BUILTIN_VARIABLES
        self.all_captures = self._all_captures(data.get("steps") or [])
        self.step_names: set[str] = set()
        self.kinds_used: set[str] = set()
        self.repeat_factor = 1  # product of the enclosing repeat blocks' times
        self.block_indexes: dict[str, int] = {}  # repeat ``index`` names -> the block's line
        #: connection -> None while open, or the line of the step that closed it (parse order)
        self.opened: dict[str, int | None] = {}

    # --- helpers ----------------------------------------------------------------------------

    def tolerating(self, build: Callable[..., T], *args: Any) -> T | None:
        """``build(*args)``; on a document the schema rejected (``tolerant``), a part that trips
        the builder is skipped so the other parts still get their semantic checks."""
        if not self.tolerant:
            return build(*args)
        try:
            return build(*args)
        except Exception:  # the schema problems already describe the broken part
            return None

    def problem(self, path: Path, message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(path, message, key=key))

    def location(self, path: Path) -> m.Location:
        line, column = self.source.position(path)
        return m.Location(self.source.file, line, column)

    def duration(self, value: object, path: Path) -> float:
        try:
            seconds = parse_duration(value)
        except UnitError as exc:
            self.problem(path, str(exc))
            return 0.0
        if seconds > MAX_DURATION_S:
            self.problem(path, f"{value!r} is longer than 7 days; is the unit right (ms, s, m, h)?")
        return seconds

    def size(self, value: object, path: Path) -> int:
        try:
            return parse_size(value)
        except UnitError as exc:
            self.problem(path, str(exc))
            return 0

    def template_in(self, text: str, path: Path, known: set[str]) -> Template:
        try:
            t = Template(text)
        except TemplateError as exc:
            self.problem(path, f"template error: {exc}")
            return Template("")
        self.check_names(t.names, path, known)
        return t

    def json_template_in(self, value: object, path: Path, known: set[str]) -> JsonTemplate:
        try:
            t = JsonTemplate(value)
        except TemplateError as exc:
            self.problem(path, f"template error: {exc}")
            return JsonTemplate(None)
        self.check_names(t.names, path, known)
        return t

    def check_names(self, names: frozenset[str], path: Path, known: set[str]) -> None:
        for name in sorted(names - known):
            hint = closest(name, known)
            if name in self.block_indexes:
                self.problem(
                    path,
                    f"variable '{name}' is the index of the repeat block at line "
                    f"{self.block_indexes[name]}, known only inside that block",
                )
            elif hint:
                self.problem(path, f"unknown variable '{name}', did you mean '{hint}'?")
            elif name in self.all_captures:
                self.problem(path, f"variable '{name}' is used before the read that captures it")
            else:
                self.problem(
                    path,
                    f"unknown variable '{name}' (declare it under 'variables', pass --var {name}=..., "
                    "or capture it in an earlier read)",
                )

    def read_file(self, rel: str, path: Path, *, binary: bool = False) -> str | bytes | None:
        full = self.base_dir / rel
        try:
            data = read_limited(full, MAX_PAYLOAD_BYTES)  # bounded while reading: /dev/zero, FIFOs
            if data is None:
                self.problem(path, f"file '{rel}' is larger than 16 MiB")
                return None
            return data if binary else data.decode("utf-8")
        except FileNotFoundError:
            self.problem(path, f"file '{rel}' not found (looked in {full})")
        except IsADirectoryError:
            self.problem(path, f"'{rel}' is a directory, not a file")
        except UnicodeDecodeError:
            self.problem(path, f"file '{rel}' is not UTF-8 text")
        except OSError as exc:
            self.problem(path, f"cannot read file '{rel}': {exc.strerror}")
        return None

    def pem(self, value: object, path: Path, *, secret: bool = False) -> str:
        if isinstance(value, dict):
            text = self.read_file(str(value["file"]), (*path, "file"))
            if text is None:
                return ""
            assert isinstance(text, str)
        else:
            text = str(value)
        if _PEM_MARK not in text:
            self.problem(path, "does not look like PEM text (no '-----BEGIN ...' line)")
        if secret:
            self.secrets.add(text)
        return text

    @staticmethod
    def _all_captures(steps: list[Any]) -> set[str]:
        found: set[str] = set()
        for step in steps:
            if not isinstance(step, dict):
                continue
            found.update((step.get("capture") or {}).keys())
            for _, inner in nested_steps(step):
                found |= _Builder._all_captures(inner)
        return found

    # --- the scenario -------------------------------------------------------------------------

    def build(self) -> m.Scenario:
        d = self.data
        target = self.target_override if self.target_override is not None else d.get("target")
        target_path: Path = () if self.target_override is not None else ("target",)
        if target is not None:
            self.check_target(target, target_path)
        self.target = target
        connections: dict[str, m.ConnectionSpec] = {}
        for name, spec in (d.get("connections") or {}).items():
            built = self.tolerating(self.connection_spec, str(name), spec, ("connections", name))
            if built is not None:
                connections[str(name)] = built
        self.connections = connections
        self.explicit_names = self._explicit_names(d["steps"], ("steps",))
        self.name_counts: dict[str, int] = {}
        self.opened = {}
        steps = self.steps(d["steps"], ("steps",))
        defaults = d.get("defaults") or {}
        read_timeout = self.duration(defaults.get("read_timeout", 10.0), ("defaults", "read_timeout"))
        run_timeout = self.duration(defaults.get("run_timeout", 300.0), ("defaults", "run_timeout"))
        load = self.load(d["load"], ("load",)) if "load" in d else None
        thresholds = tuple(
            t
            for i, item in enumerate(d.get("thresholds") or [])
            if (t := self.threshold(item, ("thresholds", i))) is not None
        )
        self.check_secrets(d.get("secrets") or [])
        return m.Scenario(
            name=d.get("name") or FsPath(self.source.file).stem,
            file=self.source.file,
            steps=steps,
            connections=m.frozen_map(connections),  # type: ignore[arg-type]
            description=d.get("description", ""),
            tags=tuple(d.get("tags") or ()),
            target=target,
            variables=m.frozen_map(self.variables),
            load=load,
            thresholds=thresholds,
            read_timeout_s=read_timeout,
            run_timeout_s=run_timeout,
            secrets=frozenset(s for s in self.secrets if s),
            source=self.masked_source(),
        )

    def masked_source(self) -> str:
        """The file's text for reports: every secret masked in any form it is written in (plain,
        double- or single-quoted YAML), and each line of a multi-line one (a PEM key)."""
        lines = {
            line.strip() for secret in self.secrets for line in secret.splitlines() if len(line.strip()) >= 8
        }
        return SecretRegistry(self.secrets | lines).mask(self.source.text)

    def check_secrets(self, names: list[str]) -> None:
        """Each name under ``secrets:`` is a variable (declared or ``--var``) or a capture."""
        known = set(self.variables) | self.all_captures
        for i, name in enumerate(names):
            if name in known:
                continue
            path: Path = ("secrets", i)
            if name in BUILTIN_VARIABLES:
                self.problem(path, f"'{name}' is a built-in counter; it cannot be a secret")
                continue
            hint = closest(name, known)
            if hint:
                self.problem(path, f"'{name}' is no variable or capture, did you mean '{hint}'?")
            else:
                self.problem(
                    path,
                    f"'{name}' is no variable or capture (declare it under 'variables', pass "
                    f"--secret-var {name}=..., or capture it in a read)",
                )

    def check_target(self, target: str, path: Path) -> None:
        problem = target_problem(target)
        if problem is None:
            return
        if self.target_override is not None and not path:  # --target: not the file's mistake
            raise UsageError(f"command line: --target: {problem}")
        self.problem(path, problem)

    # --- connections --------------------------------------------------------------------------

    def connection_spec(self, name: str, spec: dict[str, Any], path: Path) -> m.ConnectionSpec:
        url_text = spec["url"]
        url = self.template_in(url_text, (*path, "url"), self.known | self.all_captures)
        self.check_url(url_text, (*path, "url"))
        headers: list[tuple[str, Any]] = []
        secret_headers = self.secret_headers(spec, path)
        for hname, hvalue in (spec.get("headers") or {}).items():
            text = hvalue if isinstance(hvalue, str) else json.dumps(hvalue)
            hpath = (*path, "headers", hname)
            if hname.lower() in secret_headers:
                t = self.template_in(text, hpath, self.known | self.all_captures)
                headers.append((hname, m.Secret(text) if t.is_static else t))
            else:
                headers.append((hname, self.template_in(text, hpath, self.known | self.all_captures)))
        ignore: Any = None
        if "ignoreSslErrors" in spec:
            value = spec["ignoreSslErrors"]
            if isinstance(value, list):
                ignore = frozenset(value) if value else m.ALL_SSL_ERRORS
            elif value is False:
                # The manual's rule (any non-list value ignores all) would turn `false` into
                # "ignore everything": refuse the trap instead of guessing either way.
                self.problem(
                    (*path, "ignoreSslErrors"),
                    "false would ignore every certificate error (in webSocketOpen() any value that is "
                    "not a list ignores all); leave ignoreSslErrors out to verify certificates",
                )
            else:
                ignore = m.ALL_SSL_ERRORS
        ssl_config = None
        if "sslConfig" in spec:
            cfg = spec["sslConfig"]
            cpath = (*path, "sslConfig")
            cert = self.pem(cfg["localCertificate"], (*cpath, "localCertificate"))
            key = self.pem(cfg["privateKey"]["key"], (*cpath, "privateKey", "key"), secret=True)
            ssl_config = m.ClientCertificate(cert, m.Secret(key), cfg["privateKey"]["algorithm"])
        ca = self.pem(spec["caCertificates"], (*path, "caCertificates")) if "caCertificates" in spec else None
        max_size: int | None = 1 << 20
        if "maxMessageSize" in spec:
            raw = spec["maxMessageSize"]
            max_size = None if raw is None else self.size(raw, (*path, "maxMessageSize"))
        return m.ConnectionSpec(
            name=name,
            url=url,
            location=self.location(path),
            headers=tuple(headers),
            timeout_s=self.duration(spec["timeout"], (*path, "timeout")) if "timeout" in spec else None,
            ignore_ssl_errors=ignore,
            ssl_config=ssl_config,
            ca_certificates=ca,
            subprotocols=tuple(spec.get("subprotocols") or ()),
            origin=spec.get("origin"),
            compression=bool(spec.get("compression", False)),
            max_message_size=max_size,
            source_address=spec.get("sourceAddress"),
            secret_headers=frozenset(secret_headers),
        )

    def secret_headers(self, spec: dict[str, Any], path: Path) -> set[str]:
        """The connection's secret headers (lower case); each ``secretHeaders`` entry must name
        one of its headers."""
        declared = [str(n) for n in spec.get("headers") or {}]
        lower = {n.lower() for n in declared}
        for i, name in enumerate(spec.get("secretHeaders") or []):
            if name.lower() in lower:
                continue
            hint = closest(name, declared)
            if hint:
                extra = f", did you mean '{hint}'?"
            else:
                extra = f" (headers: {', '.join(declared)})" if declared else "; it has no headers"
            self.problem((*path, "secretHeaders", i), f"'{name}' is not a header of this connection{extra}")
        return _secret_header_names(spec)

    def check_url(self, url: str, path: Path) -> None:
        if url.startswith("{{"):
            return  # the whole URL comes from a variable: checked when it is opened
        if "://" in url:
            scheme = url.split("://", 1)[0].lower()
            if scheme in ("http", "https"):
                self.problem(path, f"'{url}' is an {scheme}:// URL; use ws:// or wss:// (e.g. 'ws{url[4:]}')")
            elif scheme not in ("ws", "wss"):
                self.problem(path, f"unsupported scheme '{scheme}://'; use ws:// or wss://")
            elif "{{" not in url and (problem := url_problem(url)) is not None:
                self.problem(path, problem)  # a URL with templates is checked when it is opened
        elif self.target is None:
            self.problem(
                path,
                f"relative url '{url}' needs a target: set 'target' (or pass --target) or give a ws:// URL",
            )
        elif not url.startswith("/"):
            self.problem(path, f"relative url '{url}' must start with '/' (or be a ws:// or wss:// URL)")
        elif "{{" not in url and (bad := _unsafe_character(url)) is not None:
            self.problem(path, bad)  # a URL with templates is checked when it is opened

    # --- steps --------------------------------------------------------------------------------

    def _explicit_names(self, steps: list[Any], path: Path) -> dict[str, int]:
        names: dict[str, int] = {}

        def walk(items: list[Any], p: Path) -> None:
            for i, step in enumerate(items):
                if "name" in step:
                    name = step["name"]
                    line = self.source.position((*p, i, "name"))[0]
                    if name in names:
                        self.problem(
                            (*p, i, "name"),
                            f"duplicate step name '{name}' (first used on line {names[name]})",
                        )
                    else:
                        names[name] = line
                for kind, inner in nested_steps(step):
                    walk(inner, (*p, i, kind, "steps"))

        walk(steps, path)
        return names

    def default_name(self, base: str) -> str:
        while True:
            n = self.name_counts.get(base, 0) + 1
            self.name_counts[base] = n
            candidate = base if n == 1 else f"{base} #{n}"
            if candidate not in self.explicit_names:
                return candidate

    def steps(self, items: list[Any], path: Path) -> tuple[m.StepBase, ...]:
        out: list[m.StepBase] = []
        for i, raw in enumerate(items):
            step = self.tolerating(self.step, raw, (*path, i))
            if step is not None:
                out.append(step)
        return tuple(out)

    def resolve_connection(self, body: Any, path: Path) -> str:
        name: str | None = body if isinstance(body, str) else (body or {}).get("connection")
        where = path if isinstance(body, str) or name is None else (*path, "connection")
        declared = list(self.connections)
        if name is None:
            if len(declared) == 1:
                return declared[0]
            if not declared:
                self.problem(path, "no connections are declared; add a 'connections' section")
            else:
                self.problem(path, f"which connection? add 'connection:' (one of: {', '.join(declared)})")
            return ""
        if name not in self.connections:
            if not declared:
                self.problem(where, f"connection '{name}' is not declared; add it under 'connections'")
            else:
                hint = closest(name, declared)
                extra = f", did you mean '{hint}'?" if hint else f" (declared: {', '.join(declared)})"
                self.problem(where, f"connection '{name}' is not declared{extra}")
        return str(name)

    def step(self, raw: dict[str, Any], path: Path) -> m.StepBase | None:
        """One step: its kind's ``parse`` (``runner.steps``), with the common fields built here."""
        kind = next(KINDS[key] for key in raw if key in KINDS)  # the schema let exactly one through
        self.kinds_used.add(kind.name)
        expect_raw = raw.get("expect") or {}
        node = StepNode(
            raw=raw,
            path=path,
            kind=kind.name,
            location=self.location(path),
            expect=self.expectation(expect_raw, (*path, "expect"), read=kind.content),
            on_purpose="rc" in expect_raw or "error" in expect_raw,
        )
        return kind.parse(node, self)

    # --- what a kind's parser may use (``runner.steps.base.StepParse``) ----------------------------

    def name(self, node: StepNode, default: str) -> str:
        """The step's ``name``, or a default such as ``read main`` (``read main #2`` ...)."""
        name = node.raw.get("name") or self.default_name(default.strip())
        self.step_names.add(name)
        return str(name)

    def connection(self, node: StepNode, use: Literal["opens", "closes", "uses"]) -> str:
        """The connection the step names (or the only one declared), checked to be open when used
        (unless the step expects a failure on purpose); ``opens`` and ``closes`` say what it does."""
        conn = self.resolve_connection(node.body, node.body_path)
        opened = self.opened
        if conn in self.connections and use != "opens" and not node.on_purpose:
            if conn not in opened:
                self.problem(
                    node.body_path, f"'{node.kind}' on connection '{conn}' before any 'open: {conn}'"
                )
            elif opened[conn] is not None:
                self.problem(
                    node.body_path,
                    f"'{node.kind}' on connection '{conn}' after it was closed on line {opened[conn]}",
                )
        if use == "opens":
            opened[conn] = None
        elif use == "closes" and conn in opened and not node.on_purpose:
            opened[conn] = node.location.line
        return conn

    def timeout(self, node: StepNode) -> float | None:
        """``KIND: {timeout}`` or, for the short form, ``timeout`` beside it (not both)."""
        opts = node.body if isinstance(node.body, dict) else {}
        if "timeout" in opts and "timeout" in node.raw:
            self.problem(
                (*node.path, "timeout"), f"timeout given twice: here and under '{node.kind}'", key=True
            )
        elif "timeout" in opts:
            return self.duration(opts["timeout"], (*node.body_path, "timeout"))
        elif "timeout" in node.raw:
            return self.duration(node.raw["timeout"], (*node.path, "timeout"))
        return None

    def template(self, text: str, path: Path) -> Template:
        return self.template_in(text, path, self.known)

    def json_template(self, value: object, path: Path) -> JsonTemplate:
        return self.json_template_in(value, path, self.known)

    def is_variable(self, name: str) -> bool:
        return name in self.known or name in self.all_captures

    @property
    def nesting(self) -> int:
        return self.repeat_factor

    def block(self, items: list[Any], path: Path, *, times: int, index: str | None) -> tuple[m.StepBase, ...]:
        """The steps of a block run ``times`` times, ``index`` a variable known inside it only."""
        outer = self.repeat_factor
        self.repeat_factor = min(outer * times, MAX_REPEAT + 1)
        if index is not None:
            self.known.add(index)
            self.block_indexes.setdefault(index, self.location(path[:-1]).line)
        try:
            return self.steps(items, path)
        finally:
            self.repeat_factor = outer
            if index is not None:
                self.known.discard(index)

    # --- expectations and captures ------------------------------------------------------------

    def expectation(self, raw: dict[str, Any], path: Path, *, read: bool) -> m.Expectation:
        latency = None
        if "latency" in raw:
            text = str(raw["latency"]).strip().lstrip("<=").strip()
            latency = self.duration(text, (*path, "latency"))
        content = None
        if read:
            checks = {k: v for k, v in raw.items() if k not in ("rc", "error", "latency")}
            content = self.content(checks, path) if checks else None
        return m.Expectation(rc=raw.get("rc"), error=raw.get("error"), latency_lt_s=latency, content=content)

    def content(self, raw: dict[str, Any], path: Path) -> m.ContentCheck:
        known = self.known
        regex = raw.get("regex")
        if regex is not None:
            self.compile_regex(regex, (*path, "regex"))
        schema = None
        if "json_schema" in raw:
            schema = self.json_schema(raw["json_schema"], (*path, "json_schema"))
        that_raw = raw.get("that", [])
        that_list = [that_raw] if isinstance(that_raw, str) else that_raw
        that = tuple(
            c
            for i, expr in enumerate(that_list)
            if (c := self.comparison(expr, (*path, "that", i))) is not None
        )
        return m.ContentCheck(
            text=self.template_in(raw["text"], (*path, "text"), known) if "text" in raw else None,
            contains=self.template_in(raw["contains"], (*path, "contains"), known)
            if "contains" in raw
            else None,
            regex=regex,
            json=self.json_template_in(raw["json"], (*path, "json"), known) if "json" in raw else None,
            json_schema=schema,
            that=that,
            binary=raw.get("binary"),
            length=self.size(raw["length"], (*path, "length")) if "length" in raw else None,
            sha256=raw["sha256"].lower() if "sha256" in raw else None,
        )

    def compile_regex(self, pattern: str, path: Path) -> regex.Pattern[str] | None:
        """Compiled as the checks will compile it (``regex``, ``re``'s syntax; see ``expect``),
        once its size is known to be within ``MAX_REGEX_SIZE`` (and the file's patterns together
        within ``MAX_REGEX_TOTAL``): ``x{100000000}`` took 5.7 GB to compile."""
        size = regex_size(pattern)
        total = getattr(self, "regex_total", 0) + size
        self.regex_total = total
        if size > MAX_REGEX_SIZE:
            self.problem(
                path,
                f"regular expression too large: it repeats to about {size:,} items, more than "
                f"{MAX_REGEX_SIZE:,} (a count in {{m}} or {{m,n}}, multiplied by the counts around it); "
                "use a smaller count, or 'length' to check a message's size",
            )
            return None
        if total > MAX_REGEX_TOTAL:
            self.problem(
                path,
                f"the file's regular expressions repeat to more than {MAX_REGEX_TOTAL:,} items together",
            )
            return None
        try:
            return regex.compile(pattern)
        except (regex.error, RecursionError, OverflowError) as exc:
            self.problem(path, f"invalid regular expression: {exc}")
            return None

    def json_schema(self, raw: dict[str, Any], path: Path) -> Mapping[str, object] | None:
        schema: Any = raw
        if set(raw) == {"file"} and isinstance(raw["file"], str):
            text = self.read_file(raw["file"], (*path, "file"))
            if text is None:
                return None
            try:
                schema = yaml.safe_load(text) if not raw["file"].endswith(".json") else json.loads(text)
            except (ValueError, yaml.YAMLError) as exc:
                self.problem(
                    (*path, "file"), f"'{raw['file']}' is not valid JSON/YAML: {str(exc).splitlines()[0]}"
                )
                return None
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            self.problem(path, f"not a valid JSON Schema: {exc.message}")
            return None
        except Exception as exc:  # jsonschema may raise on exotic input (bad $ref, huge numbers)
            self.problem(path, f"not a valid JSON Schema: {exc}")
            return None
        return m.frozen_map(schema) if isinstance(schema, dict) else None

    def jmespath(self, expr: str, path: Path) -> bool:
        try:
            jmespath.compile(expr)
        except Exception as exc:  # jmespath raises several unrelated error types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.problem(path, f"invalid JMESPath expression '{expr}': {first}")
            return False
        return True

    def comparison(self, expr: str, path: Path) -> tuple[str, str] | None:
        """A ``that`` entry as (the text as written, the JMESPath expression evaluated): see
        ``that_expression``. Refused here when it cannot be evaluated, never at run time."""
        problem = that_problem(expr)
        if problem is not None:
            self.problem(path, problem)
            return None
        return (expr, that_expression(expr))

    def captures(self, raw: dict[str, Any], path: Path) -> tuple[m.Capture, ...]:
        out: list[m.Capture] = []
        for var, spec in raw.items():
            cpath = (*path, var)
            secret = var in self.secret_names
            if isinstance(spec, str):
                if self.jmespath(spec, cpath):
                    out.append(m.Capture(var, path=spec, secret=secret))
            else:
                rx = self.compile_regex(spec["regex"], (*cpath, "regex"))
                group = spec.get("group", 1)
                if rx is not None:
                    if isinstance(group, int) and group > rx.groups:
                        self.problem((*cpath, "group"), f"the regex has {rx.groups} group(s), not {group}")
                    elif isinstance(group, str) and group not in rx.groupindex:
                        self.problem((*cpath, "group"), f"the regex has no group named '{group}'")
                    index = group if isinstance(group, int) else rx.groupindex.get(group, 1)
                    out.append(m.Capture(var, regex=spec["regex"], group=index, secret=secret))
            self.known.add(var)
        return tuple(out)

    # --- load and thresholds ------------------------------------------------------------------

    def load(self, raw: dict[str, Any], path: Path) -> m.LoadSpec:
        def dur(key: str, default: float | None) -> float | None:
            return self.duration(raw[key], (*path, key)) if key in raw else default

        for key in ("vus", "max_vus"):
            if raw.get(key, 0) > MAX_VUS:
                self.problem((*path, key), f"{raw[key]} virtual users is more than {MAX_VUS:,}")
        if raw.get("iterations", 0) > MAX_ITERATIONS:
            self.problem(
                (*path, "iterations"),
                f"{raw['iterations']} iterations is more than {MAX_ITERATIONS:,}; use a duration",
            )
        if raw.get("workers", 0) > MAX_WORKERS:
            self.problem((*path, "workers"), f"{raw['workers']} worker processes is more than {MAX_WORKERS}")
        stages: list[m.Stage] = []
        kinds: set[str] = set()
        for i, st in enumerate(raw.get("stages") or []):
            spath = (*path, "stages", i)
            d = self.duration(st["duration"], (*spath, "duration"))
            if "vus" in st:
                kinds.add("vus")
                if st["vus"] > MAX_VUS:
                    self.problem((*spath, "vus"), f"{st['vus']} virtual users is more than {MAX_VUS:,}")
                stages.append(m.Stage(d, float(st["vus"])))
            else:
                kinds.add("rate")
                stages.append(m.Stage(d, self.rate(st["rate"], (*spath, "rate"))))
        if len(kinds) > 1:
            self.problem((*path, "stages"), "stages mix 'vus' and 'rate'; use one model for all stages")
        rate = self.rate(raw["rate"], (*path, "rate")) if "rate" in raw else None
        is_open = rate is not None or kinds == {"rate"}
        if "vus" in raw and "rate" in raw:
            self.problem((*path, "rate"), "give either 'vus' (closed model) or 'rate' (open model), not both")
        if not ({"duration", "iterations", "stages"} & set(raw)):
            self.problem(path, "load needs 'duration', 'iterations' or 'stages' to know when to stop")
        duration = dur("duration", None)
        if duration is not None and duration <= 0:
            self.problem((*path, "duration"), "a load of duration 0 runs nothing; give a duration above 0")
        if rate is not None and rate <= 0 and not stages:
            self.problem((*path, "rate"), "a rate of 0 starts nothing; give a rate above 0")
        if stages and (sum(st.duration_s for st in stages) <= 0 or max(st.target for st in stages) <= 0):
            self.problem(
                (*path, "stages"), "these stages run nothing (no time, or no users or starts in any stage)"
            )
        first, most = 0.05, 1.0
        if "failure_pause" in raw:
            fp = raw["failure_pause"]
            fpath = (*path, "failure_pause")
            if isinstance(fp, dict):
                first = self.duration(fp["first"], (*fpath, "first"))
                most = self.duration(fp["max"], (*fpath, "max"))
                if most < first:
                    self.problem((*fpath, "max"), "max is shorter than first")
            else:
                first = most = self.duration(fp, fpath)
        return m.LoadSpec(
            model="open" if is_open else "closed",
            vus=int(raw.get("vus", 1)),
            duration_s=duration,
            iterations=raw.get("iterations"),
            ramp_up_s=dur("ramp_up", 0.0) or 0.0,
            stages=tuple(stages),
            rate=rate,
            max_vus=raw.get("max_vus"),
            workers=raw.get("workers"),
            source_addresses=tuple(raw.get("source_addresses") or ()),
            graceful_stop_s=dur("graceful_stop", 5.0) or 0.0,
            think_time_s=dur("think_time", 0.0) or 0.0,
            pace_s=self.pace(raw, path, is_open),
            hold=bool(raw.get("hold", False)),
            failure_pause_first_s=first,
            failure_pause_max_s=most,
        )

    def pace(self, raw: dict[str, Any], path: Path, is_open: bool) -> float | None:
        if "pace" not in raw:
            return None
        pace = self.duration(raw["pace"], (*path, "pace"))
        if is_open:
            self.problem(
                (*path, "pace"),
                "pace is for the closed model (vus); the open model's rate sets when starts are due",
            )
        elif "think_time" in raw:
            self.problem(
                (*path, "pace"),
                "give either 'pace' (start to start) or 'think_time' (end to start), not both",
            )
        elif pace <= 0:
            self.problem(
                (*path, "pace"), "a pace of 0 is no pace; leave it out to start each iteration at once"
            )
        return pace

    def rate(self, value: object, path: Path) -> float:
        try:
            return parse_rate(value)
        except UnitError as exc:
            self.problem(path, str(exc))
            return 0.0

    def threshold(self, item: str | dict[str, Any], path: Path) -> m.Threshold | None:
        expr = item if isinstance(item, str) else item["threshold"]
        epath = path if isinstance(item, str) else (*path, "threshold")
        options = {} if isinstance(item, str) else item
        line, column = self.source.position(epath)
        try:
            return parse_threshold(
                expr,
                step_names=self.step_names,
                kinds=self.kinds_used,
                location=m.Location(self.source.file, line, column),
                abort_on_fail=bool(options.get("abort_on_fail", False)),
                accept_no_data=options.get("no_data", "fail") == "pass",
            )
        except InvalidThreshold as exc:
            self.problem(epath, str(exc))
            return None


#: JMESPath's comparators; a JSON value written beside one is a value (see ``that_expression``).
_COMPARATORS = frozenset({"eq", "ne", "lt", "lte", "gt", "gte"})
#: Tokens that end an operand on its right / start one on its left.
_ENDS_OPERAND = _COMPARATORS | {"eof", "rparen", "rbracket", "rbrace", "and", "or", "comma", "pipe"}
_STARTS_OPERAND = _COMPARATORS | {"lparen", "filter", "lbracket", "lbrace", "and", "or", "not", "comma"}
_STARTS_OPERAND |= {"colon", "pipe"}
_JSON_SCALAR_RE = re.compile(r'-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|"(?:[^"\\]|\\.)*"')


def that_expression(text: str) -> str:
    """The JMESPath expression a ``that`` entry means: the entry itself, except that a JSON value
    written beside a comparator (``3``, ``-1.5``, ``true``, ``null``, and on its right ``"text"``)
    is that value, as it was before ``that`` took whole JMESPath expressions (``result.count >= 3``,
    ``session != null``). In JMESPath proper a bare number is not an expression, and ``null`` or
    ``"text"`` would be field names; such a field is still reachable as ``@.null`` or in a longer
    path. Everything else is plain JMESPath: ``a == `1```, ``a == b`` (two paths), ``name == 'x'``.
    Raises ``jmespath`` errors for text that is not an expression at all.
    """
    tokens = list(jmespath.lexer.Lexer().tokenize(text))
    starts = [t["start"] for t in tokens]
    replace: dict[int, tuple[int, str]] = {}  # start -> (end, replacement)

    def operand(first: int, last: int, *, right: bool) -> None:
        if first > last:
            return
        begin, end = starts[first], starts[last + 1] if last + 1 < len(tokens) else len(text)
        raw = text[begin:end].strip()
        if raw.startswith('"') and not right:
            return  # on the left, as before, "X-Trace" is a (quoted) field name
        if _JSON_SCALAR_RE.fullmatch(raw):  # JSON text is a JMESPath literal between backticks
            replace[begin] = (begin + len(raw), "`" + raw.replace("`", "\\`") + "`")

    for k, token in enumerate(tokens):
        if token["type"] not in _COMPARATORS:
            continue
        last = k + 1  # the operand on the right: up to the token that ends it
        while last < len(tokens) and tokens[last]["type"] not in _ENDS_OPERAND:
            last += 1
        operand(k + 1, last - 1, right=True)
        first = k - 1  # and on the left, back to the token that starts it
        while first >= 0 and tokens[first]["type"] not in _STARTS_OPERAND:
            first -= 1
        operand(first + 1, k - 1, right=False)
    out, at = [], 0
    for begin in sorted(replace):
        end, value = replace[begin]
        out.append(text[at:begin])
        out.append(value)
        at = end
    out.append(text[at:])
    return "".join(out)


def that_problem(text: str) -> str | None:
    """Why a ``that`` entry cannot be evaluated, or None: JMESPath syntax, an unknown function, a
    function given the wrong number of arguments."""
    try:
        parsed = jmespath.compile(that_expression(text)).parsed
    except Exception as exc:  # jmespath raises several unrelated error types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"'{text}' is not a JMESPath expression: {first} (e.g. 'result.count >= 3', "
            "\"status == 'ok'\", 'a == b', 'length(items) > `0`')"
        )
    table = jmespath.functions.Functions().FUNCTION_TABLE
    todo = [parsed]
    while todo:
        node = todo.pop()
        if node.get("type") == "function_expression":
            name = node["value"]
            if name not in table:
                hint = closest(name, table)
                extra = f", did you mean '{hint}'?" if hint else ""
                return f"'{text}': JMESPath has no function '{name}'{extra}"
            signature = table[name]["signature"]
            given = len(node["children"])
            variadic = any(arg.get("variadic") for arg in signature)
            if given < len(signature) - variadic or (not variadic and given > len(signature)):
                return f"'{text}': {name}() takes {len(signature)} argument(s), got {given}"
        todo.extend(c for c in node.get("children", ()) if isinstance(c, dict))
    return None


#: A pattern is refused when ``regex_size`` says it unrolls to more than this many items: the
#: ``regex`` module copies a repeated item once per required repetition (``x{10000}``: 0.08 s and
#: 2.6 MB to compile; ``x{100000000}``: 5.7 GB).
MAX_REGEX_SIZE = 10_000
#: The same for all the patterns of one file together (each is compiled, and cached, once).
MAX_REGEX_TOTAL = 50_000
_REPEAT_RE = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_GROUP_OPEN_RE = re.compile(r"\(\?(?:P?<(?![=!])\w+>|<?[=!]|[:>|]|[\w^-]*[:)])")


def regex_size(pattern: str) -> int:
    """About how many items ``regex`` unrolls ``pattern`` into, without compiling it.

    Every character, escape or set counts 1; a repeat ``{m}``, ``{m,}`` or ``{m,n}`` multiplies
    what it repeats (a group as a whole) by ``m`` (the required copies; the optional rest is one
    loop, which cost nothing measurable up to ``x{0,10000000}``). Errs on the large side for
    syntax it does not know; the compile that follows reports invalid syntax.
    """
    # One entry per open group: [size so far, size of the last item (what a repeat repeats)].
    stack: list[list[int]] = [[0, 0]]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        top = stack[-1]
        if c == "\\":
            j = i + 2
            if pattern[i + 1 : i + 2] in ("p", "P", "N") and pattern[j : j + 1] == "{":
                close = pattern.find("}", j)  # \p{Letter}, \N{EM DASH}: one item, not a repeat
                j = n if close < 0 else close + 1
            top[0] += 1
            top[1] = 1
            i = j
        elif c == "[":
            j = i + 1
            if pattern[j : j + 1] == "^":
                j += 1
            if pattern[j : j + 1] == "]":
                j += 1
            depth = 1  # sets nest in the module's version 1 syntax
            while j < n and depth:
                if pattern[j] == "\\":
                    j += 1
                elif pattern[j] == "[":
                    depth += 1
                elif pattern[j] == "]":
                    depth -= 1
                j += 1
            top[0] += 1
            top[1] = 1
            i = j
        elif c == "(":
            # "(?:", "(?P<name>", "(?<=", "(?i:" open a group without an item of their own;
            # "(?i)" sets flags and closes at once.
            m = _GROUP_OPEN_RE.match(pattern, i)
            i = m.end() if m else i + 1
            if not (m and m.group().endswith(")")):
                stack.append([0, 0])
        elif c == ")":
            if len(stack) > 1:
                size = stack.pop()[0]
                stack[-1][0] += size
                stack[-1][1] = size
            i += 1
        elif c == "|":
            top[1] = 0
            i += 1
        elif c == "{" and (m := _REPEAT_RE.match(pattern, i)) and (m.group(1) or m.group(3)):
            times = max(1, int(m.group(1) or 0))
            top[0] += top[1] * (times - 1)
            top[1] *= times
            i = m.end()
        else:
            if c not in "*+?":
                top[0] += 1
                top[1] = 1
            i += 1
        if stack[0][0] > 1 << 40:  # already absurd: stop counting
            break
    while len(stack) > 1:  # an unclosed group: the compile reports it
        size = stack.pop()[0]
        stack[-1][0] += size
    return stack[0][0]


def target_problem(target: str) -> str | None:
    """What is wrong with a ``target`` (the file's or ``--target``), or None when it is usable:
    ``embedded``, ``embedded-tls`` or an absolute ws:// or wss:// URL."""
    if target in ("embedded", "embedded-tls"):
        return None
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme in ("http", "https"):
        return f"target '{target}' uses {scheme}://; use ws:// or wss:// (e.g. 'ws{target[4:]}')"
    if scheme not in ("ws", "wss"):
        return f"target '{target}' must be a ws:// or wss:// URL, 'embedded' or 'embedded-tls'"
    problem = url_problem(target)
    return None if problem is None else f"not a valid URL: {problem}"


def url_problem(url: str) -> str | None:
    """What is wrong with an absolute ws:// or wss:// URL, or None: parsed as the client will parse
    it when it opens (``urllib``, then ``websockets``), so a URL that passes cannot fail to parse
    at run time. The URL itself is not repeated: it may hold a password or an ``${ENV}`` value."""
    bad = _unsafe_character(url)
    if bad is not None:
        return bad
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        if "Invalid IPv6 URL" in str(exc):
            return "the host has an unclosed '[' or a stray ']' (an IPv6 address is written [::1])"
        return f"the host is not valid: {exc}"  # e.g. 'zz' does not appear to be an IPv6 address
    host_port = parts.netloc.rpartition("@")[2]
    port_text = host_port.rpartition("]")[2] if host_port.startswith("[") else host_port
    port_text = port_text.partition(":")[2] if ":" in port_text else ""
    if port_text and not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        return f"port '{port_text[:20]}' is not a number from 1 to 65535"
    if not parts.hostname:
        return "has no host (expected ws://HOST[:PORT]/PATH)"
    try:
        parse_uri(url)
    except InvalidURI as exc:
        return f"not a valid WebSocket URL: {exc.msg}"
    except ValueError as exc:
        return f"not a valid WebSocket URL: {exc}"
    return None


def _unsafe_character(url: str) -> str | None:
    """A space or control character in a URL: it cannot be sent in the HTTP request line."""
    for index, char in enumerate(url):
        if char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F:
            what = "a space" if char == " " else f"the character {char!r}"
            return f"contains {what} at position {index + 1}; percent-encode it (%20 for a space)"
    return None
