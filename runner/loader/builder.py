"""The walk from a schema-valid document to the frozen ``Scenario``: the target and connections,
then the steps in file order (each kind parses its own node through ``StepParse``, which
``Builder`` is), then defaults, load and thresholds. Walking in file order is what lets a step
know which connections are open and which variables have been captured by then."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any, Literal

from runner.checks.thresholds import RUN_SUBJECTS
from runner.errors import Problem
from runner.loader.connections import check_target, connection_spec
from runner.loader.content import captures, content, expectation
from runner.loader.data_files import check_columns, data_sets
from runner.loader.document import BUILTIN_VARIABLES, Document
from runner.loader.load_section import load_spec, threshold_list
from runner.loader.secrets_scan import secret_names
from runner.scenario import model as m
from runner.scenario.model import MAX_REPEAT
from runner.scenario.secrets import SecretRegistry
from runner.scenario.source import Path, SourceMap
from runner.scenario.templates import JsonTemplate, Template
from runner.scenario.validation import closest, nested_steps
from runner.steps import KINDS, kind_of
from runner.steps.base import StepNode
from runner.steps.sharing import conflicts

__all__ = ["Builder"]


class Builder:
    """Builds the model from schema-valid data, collecting every semantic problem on the way;
    the one implementation of ``runner.steps.base.StepParse``, the view step kinds parse through.

    ``tolerant``: the schema rejected the document; build what still stands, to report its
    problems beside the schema's (see ``Document.tolerating``).
    """

    def __init__(
        self,
        source: SourceMap,
        data: dict[str, Any],
        cli_vars: dict[str, str],
        target: str | None,
        base_dir: FsPath,
        secrets: set[str],
        *,
        tolerant: bool = False,
    ) -> None:
        self.data = data
        self.target_override = target
        variables = dict(data.get("variables") or {})
        variables.update((name, str(value)) for name, value in cli_vars.items())  # SecretText: a str
        self.variables = variables
        self.doc = Document(
            source,
            base_dir,
            secrets,
            secret_names=secret_names(data, cli_vars),
            known=set(variables) | BUILTIN_VARIABLES,
            all_captures=_all_captures(data.get("steps") or []),
            tolerant=tolerant,
        )
        self.step_names: set[str] = set()
        self.blocks: dict[str, str] = {}  # names and kinds of block steps -> their kind
        self.kinds_used: set[str] = set()
        self.repeat_factor = 1  # product of the enclosing repeat blocks' times
        self.target: str | None = None
        self.connections: dict[str, m.ConnectionSpec] = {}
        self.explicit_names: dict[str, int] = {}  # a step's ``name`` -> its line
        self.name_counts: dict[str, int] = {}  # default name -> how many steps took it
        #: connection -> None while open, or the line of the step that closed it (parse order)
        self.opened: dict[str, int | None] = {}

    @property
    def problems(self) -> list[Problem]:
        return self.doc.problems

    # --- the scenario -------------------------------------------------------------------------

    def build(self) -> m.Scenario:
        """The scenario; the problems found are in ``problems`` (a raise is a bug or a broken
        document in ``tolerant`` mode, except ``UsageError`` for a bad ``--target``)."""
        d, doc = self.data, self.doc
        target = self.target_override if self.target_override is not None else d.get("target")
        if target is not None:
            check_target(doc, target, () if self.target_override is not None else ("target",))
        self.target = target
        sets = data_sets(doc, d.get("data") or {}, set(self.variables) | BUILTIN_VARIABLES)
        doc.known |= set(d.get("data") or {})  # a set that failed to load is still declared
        self.connections = self._connections(d.get("connections") or {})
        self.explicit_names = self._explicit_names(d["steps"], ("steps",))
        self.name_counts = {}
        self.opened = {}
        steps = self.steps(d["steps"], ("steps",))
        defaults = d.get("defaults") or {}
        read_timeout = doc.duration(defaults.get("read_timeout", 10.0), ("defaults", "read_timeout"))
        run_timeout = doc.duration(defaults.get("run_timeout", 300.0), ("defaults", "run_timeout"))
        load = load_spec(doc, d["load"], ("load",)) if "load" in d else None
        thresholds = threshold_list(
            doc,
            d.get("thresholds") or [],
            step_names=self.step_names,
            kinds=self.kinds_used,
            blocks=self.blocks,
        )
        self.check_secrets(d.get("secrets") or [])
        check_columns(doc, d, sets)
        return m.Scenario(
            name=d.get("name") or FsPath(doc.source.file).stem,
            file=doc.source.file,
            steps=steps,
            connections=m.frozen_map(self.connections),  # type: ignore[arg-type]
            description=d.get("description", ""),
            tags=tuple(d.get("tags") or ()),
            seed=d.get("seed"),
            target=target,
            variables=m.frozen_map(self.variables),
            data=m.frozen_map(sets),  # type: ignore[arg-type]
            load=load,
            thresholds=thresholds,
            read_timeout_s=read_timeout,
            run_timeout_s=run_timeout,
            secrets=frozenset(s for s in doc.secrets if s),
            source=self.masked_source(),
        )

    def _connections(self, specs: dict[Any, Any]) -> dict[str, m.ConnectionSpec]:
        """The ``connections:`` section; a connection that trips a tolerant build is left out."""
        connections: dict[str, m.ConnectionSpec] = {}
        for name, spec in specs.items():
            built = self.doc.tolerating(
                connection_spec, self.doc, str(name), spec, ("connections", name), self.target
            )
            if built is not None:
                connections[str(name)] = built
        return connections

    def masked_source(self) -> str:
        """The file's text for reports: every secret masked in any form it is written in (plain,
        double- or single-quoted YAML), and each line of a multi-line one (a PEM key)."""
        secrets = self.doc.secrets
        lines = {line.strip() for secret in secrets for line in secret.splitlines() if len(line.strip()) >= 8}
        return SecretRegistry(secrets | lines).mask(self.doc.source.text)

    def check_secrets(self, names: list[str]) -> None:
        """Each name under ``secrets:`` is a variable (declared or ``--var``) or a capture."""
        known = set(self.variables) | self.doc.all_captures
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

    # --- steps --------------------------------------------------------------------------------

    def _explicit_names(self, steps: list[Any], path: Path) -> dict[str, int]:
        """Every ``name:`` given, nested blocks included, so a default name never takes one;
        a name given twice is a problem."""
        names: dict[str, int] = {}

        def walk(items: list[Any], p: Path) -> None:
            for i, step in enumerate(items):
                if "name" in step:
                    name = step["name"]
                    line = self.doc.source.position((*p, i, "name"))[0]
                    if isinstance(name, str) and (name in KINDS or name in RUN_SUBJECTS):
                        means = f"every {name} step" if name in KINDS else "the run-wide metric"
                        self.problem(
                            (*p, i, "name"),
                            f"step name '{name}' is taken: in a threshold '{name}.…' means {means}, "
                            f"so this step could not be named; choose another (e.g. '{name} reply')",
                        )
                    if name in names:
                        self.problem(
                            (*p, i, "name"),
                            f"duplicate step name '{name}' (first used on line {names[name]})",
                        )
                    else:
                        names[name] = line
                for below, inner in nested_steps(step):
                    walk(inner, (*p, i, *below))

        walk(steps, path)
        return names

    def default_name(self, base: str) -> str:
        """``base``, then ``base #2``, ``base #3`` ... skipping names given explicitly."""
        while True:
            n = self.name_counts.get(base, 0) + 1
            self.name_counts[base] = n
            candidate = base if n == 1 else f"{base} #{n}"
            if candidate not in self.explicit_names:
                return candidate

    def steps(self, items: list[Any], path: Path) -> tuple[m.StepBase, ...]:
        """The steps in file order; a step that trips a tolerant build is left out."""
        out: list[m.StepBase] = []
        positions: list[int] = []
        for i, raw in enumerate(items):
            step = self.doc.tolerating(self.step, raw, (*path, i))
            if step is not None:
                out.append(step)
                positions.append(i)
        self._check_alongside(out, [(*path, i) for i in positions])
        return tuple(out)

    def _check_alongside(self, steps: list[m.StepBase], paths: list[Path]) -> None:
        """A step whose block runs beside the steps after it (``every``) needs steps after it,
        and the two may not read one connection: two reads at once would take each other's
        messages."""
        for j, step in enumerate(steps):
            kind = kind_of(step)
            if not kind.alongside:
                continue
            path = (*paths[j], kind.name)
            if j == len(steps) - 1:
                self.problem(
                    path,
                    f"nothing follows this '{kind.name}' in its block: it runs in the background "
                    "beside the steps after it; put the steps it should accompany after it",
                )
                continue
            for message in conflicts(
                step.inner(), tuple(steps[j + 1 :]), "this background", "a step after it", b_releases=True
            ):
                self.problem(path, message)

    def step(self, raw: dict[str, Any], path: Path) -> m.StepBase | None:
        """One step: its kind's ``parse`` (``runner.steps``), with the common fields built here."""
        kind = next(KINDS[key] for key in raw if key in KINDS)  # the schema let exactly one through
        self.kinds_used.add(kind.name)
        expect_raw = raw.get("expect") or {}
        node = StepNode(
            raw=raw,
            path=path,
            kind=kind.name,
            location=self.doc.location(path),
            expect=expectation(self.doc, expect_raw, (*path, "expect"), read=kind.content),
            on_purpose="rc" in expect_raw or "error" in expect_raw,
        )
        step = kind.parse(node, self)
        if step.inner():
            self.blocks[step.name] = self.blocks[kind.name] = kind.name
        return step

    def resolve_connection(self, body: Any, path: Path) -> str:
        """The connection a step names, or the only one declared; a problem when it is not
        declared or there is no telling which."""
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

    # --- what a kind's parser may use (``runner.steps.base.StepParse``) ----------------------------

    def problem(self, path: Path, message: str, *, key: bool = False) -> None:
        self.doc.problem(path, message, key=key)

    def duration(self, value: object, path: Path) -> float:
        return self.doc.duration(value, path)

    def size(self, value: object, path: Path) -> int:
        return self.doc.size(value, path)

    def read_file(self, rel: str, path: Path, *, binary: bool = False) -> str | bytes | None:
        return self.doc.read_file(rel, path, binary=binary)

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
        return self.doc.template_in(text, path, self.doc.known)

    def json_template(self, value: object, path: Path) -> JsonTemplate:
        return self.doc.json_template_in(value, path, self.doc.known)

    def content(self, raw: dict[str, Any], path: Path) -> m.ContentCheck:
        return content(self.doc, raw, path)

    def captures(self, raw: dict[str, Any], path: Path) -> tuple[m.Capture, ...]:
        return captures(self.doc, raw, path)

    def is_variable(self, name: str) -> bool:
        return name in self.doc.known or name in self.doc.all_captures

    @property
    def nesting(self) -> int:
        return self.repeat_factor

    def block(self, items: list[Any], path: Path, *, times: int, index: str | None) -> tuple[m.StepBase, ...]:
        """The steps of a block run ``times`` times, ``index`` a variable known inside it only."""
        outer = self.repeat_factor
        self.repeat_factor = min(outer * times, MAX_REPEAT + 1)
        known = self.doc.known
        if index is not None:
            known.add(index)
            self.doc.block_indexes.setdefault(index, self.doc.location(path[:-1]).line)
        try:
            return self.steps(items, path)
        finally:
            self.repeat_factor = outer
            if index is not None:
                known.discard(index)


def _all_captures(steps: list[Any]) -> set[str]:
    """Every variable a ``capture`` anywhere in ``steps`` makes, nested blocks included."""
    found: set[str] = set()
    for step in steps:
        if not isinstance(step, dict):
            continue
        found.update((step.get("capture") or {}).keys())
        for _, inner in nested_steps(step):
            found |= _all_captures(inner)
    return found
