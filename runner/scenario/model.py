"""The validated scenario as frozen, typed objects: the only form the engine and reports ever see.

``runner.loader`` builds these from YAML after JSON-Schema and semantic validation; nothing
downstream handles raw dicts. Durations are seconds (float), sizes bytes (int), rates per second.
Every step knows its YAML ``Location`` so a failure can point at the line that declared it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Literal, TypeAlias

from runner.client.options import ALL_SSL_ERRORS, SSL_ERROR_KEYWORDS, IgnoreSslErrors

if TYPE_CHECKING:
    from runner.scenario.templates import JsonTemplate, Template

__all__ = [
    "ALL_SSL_ERRORS",
    "MAX_DURATION_S",
    "MAX_ITERATIONS",
    "MAX_PAYLOAD_BYTES",
    "MAX_REPEAT",
    "MAX_VUS",
    "MAX_WORKERS",
    "SSL_ERROR_KEYWORDS",
    "Capture",
    "ClientCertificate",
    "ConnectionSpec",
    "ContentCheck",
    "Expectation",
    "LoadSpec",
    "Location",
    "Matcher",
    "Scenario",
    "Secret",
    "Stage",
    "Step",
    "StepBase",
    "SuccessRule",
    "Threshold",
    "frozen_map",
]


#: Limits beyond which a value is a mistake, not a plan (the loader and the command line refuse it).
MAX_VUS = 1_000_000
MAX_DURATION_S = 7 * 86400.0
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
MAX_REPEAT = 10_000_000
MAX_ITERATIONS = 1_000_000_000
MAX_WORKERS = 1024


def frozen_map(items: Mapping[str, object] | None = None) -> Mapping[str, object]:
    """A read-only mapping, so frozen dataclasses stay frozen all the way down."""
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was declared: file and 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Secret:
    """A value that must never be shown: private keys, Authorization headers, ``${ENV}`` tokens.

    ``str()`` and ``repr()`` are masked; only ``reveal()`` gives the value, and only the client
    calls it when the value goes on the wire.
    """

    __slots__ = ("_value",)
    MASK = "***"

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.MASK!r})"

    def __str__(self) -> str:
        return self.MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


# --- connections (options named as in WinCC OA webSocketOpen()) ------------------------------

# ``ignoreSslErrors``' values and keywords are the client's own types (runner/client/options.py).


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """``sslConfig``: ``localCertificate`` (PEM) and ``privateKey`` {key (PEM), algorithm}; the
    engine hands it to the client as ``runner.client.ClientCertificate``, the key revealed."""

    certificate_pem: str
    key_pem: Secret
    algorithm: Literal["RSA", "DSA", "EC"]


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """A declared connection: what ``open`` passes to ``webSocketOpen(url, options)``.

    ``url`` may be relative to the scenario's target and may hold templates. Header values are
    templates; a sensitive header's value (Authorization, Cookie, ...) is a ``Secret`` when it
    holds no ``{{ }}`` (the usual case, ``${ENV}`` is already resolved), else a ``Template`` whose
    source is listed in ``Scenario.secrets``. ``secret_headers``: the lower-case names of the
    headers whose rendered values are secrets (sensitive by name, or listed in ``secretHeaders``);
    the engine registers each value it renders for them (``runner.scenario.secrets``).
    """

    name: str
    url: Template
    location: Location
    headers: tuple[tuple[str, Template | Secret], ...] = ()
    timeout_s: float | None = None
    ignore_ssl_errors: IgnoreSslErrors = None
    ssl_config: ClientCertificate | None = None
    ca_certificates: str | None = None  # PEM bundle to trust in addition to / instead of system CAs
    subprotocols: tuple[str, ...] = ()
    origin: str | None = None
    compression: bool = False
    max_message_size: int | None = 1 << 20
    source_address: str | None = None
    secret_headers: frozenset[str] = frozenset()


# --- payloads and expectations ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentCheck:
    """What a received message must satisfy (for ``match`` and for a read's ``expect``).

    Every field that is set must hold. ``that`` holds JMESPath expressions that must come out
    true, each as (the text as written, the expression evaluated), e.g.
    ``("result.count >= 3", "result.count >= `3`")`` (see ``runner.loader.that_expression``).
    """

    text: Template | None = None
    contains: Template | None = None
    regex: str | None = None
    json: JsonTemplate | None = None  # subset match
    json_schema: Mapping[str, object] | None = None
    that: tuple[tuple[str, str], ...] = ()
    binary: bool | None = None  # True: must be binary, False: must be text
    length: int | None = None
    sha256: str | None = None

    #: Derived at construction: when ``json`` is the only check and a flat object whose values
    #: are str/int constants or a bare ``{{ name }}``, its fields as ``(key, variable or None,
    #: constant)``, so a ``match`` compares fields of the parsed message without rendering the
    #: expected tree per message (``runner.expect.matches``); None otherwise.
    json_fields: tuple[tuple[str, str | None, object], ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        only_json = (
            self.json is not None
            and self.text is None
            and self.contains is None
            and self.regex is None
            and self.json_schema is None
            and not self.that
            and self.binary is None
            and self.length is None
            and self.sha256 is None
        )
        fields = self.json.flat_fields() if only_json and self.json is not None else None
        object.__setattr__(self, "json_fields", fields)

    @property
    def needs_json(self) -> bool:
        """Whether the message must be parsed as JSON (parse only when this is true)."""
        return self.json is not None or self.json_schema is not None or bool(self.that)


Matcher: TypeAlias = ContentCheck


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a step's outcome must be. ``rc=None`` means the step's default success code.

    ``error``: a keyword (``CertificateUntrusted``) or substring the last error must contain.
    ``latency_lt_s``: the step's latency must stay under this. ``content``: for reads.
    """

    rc: int | None = None
    error: str | None = None
    latency_lt_s: float | None = None
    content: ContentCheck | None = None
    #: Derived: no rc, error or latency expectation, so the kind's default success decides the
    #: outcome (the per-message fast path of ``runner.engine.steps.base.finish``).
    outcome_default: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        default = self.rc is None and self.error is None and self.latency_lt_s is None
        object.__setattr__(self, "outcome_default", default)


@dataclass(frozen=True, slots=True)
class Capture:
    """Store part of a read message in a variable: a JMESPath ``path``, or a ``regex`` group.
    ``secret``: the value is masked in every output (listed under ``secrets:``, or it feeds a
    sensitive header or a URL's userinfo)."""

    variable: str
    path: str | None = None
    regex: str | None = None
    group: int = 1
    secret: bool = False


# --- steps ------------------------------------------------------------------------------------


class SuccessRule(Enum):
    """What rc a step kind succeeds with, as in the manual: a socket number or a byte count
    (``open``, ``write``: any rc >= 0), or 0 (the others)."""

    ZERO = "0"
    NON_NEGATIVE = ">= 0"

    def holds(self, rc: int) -> bool:
        return rc >= 0 if self is SuccessRule.NON_NEGATIVE else rc == 0


@dataclass(frozen=True, slots=True)
class StepBase:
    """Common to all steps; each kind's module (``runner.steps.<kind>``) subclasses it with its
    own fields and says its ``kind`` (the YAML key) and ``success`` rule. ``name`` is unique in
    the scenario (the loader makes default names such as ``read main`` or ``read main #2``) and
    is what thresholds and reports use."""

    kind: ClassVar[str] = ""
    success: ClassVar[SuccessRule] = SuccessRule.ZERO

    name: str
    location: Location
    expect: Expectation = field(default_factory=Expectation)

    def inner(self) -> tuple[StepBase, ...]:
        """The steps a block holds (``repeat``); none for the others."""
        return ()

    def blocks(self) -> tuple[tuple[StepBase, ...], ...]:
        """The step lists a block runs, each as one list (``parallel``: one per branch)."""
        inner = self.inner()
        return (inner,) if inner else ()


#: Any step (the kinds are ``StepBase``'s subclasses in ``runner.steps``).
Step: TypeAlias = StepBase


# --- load and thresholds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stage:
    """Move linearly to ``target`` (virtual users, or starts per second) over ``duration_s``."""

    duration_s: float
    target: float


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """The ``load:`` section. ``model`` is closed (``vus``) or open (``rate``)."""

    model: Literal["closed", "open"] = "closed"
    vus: int = 1
    duration_s: float | None = None
    iterations: int | None = None  # per virtual user (closed) or in total (open)
    ramp_up_s: float = 0.0
    stages: tuple[Stage, ...] = ()
    rate: float | None = None
    max_vus: int | None = None
    workers: int | None = None  # None: one per core
    source_addresses: tuple[str, ...] = ()
    graceful_stop_s: float = 5.0
    think_time_s: float = 0.0
    #: Closed model: each user starts an iteration every ``pace_s`` (start to start; a late one
    #: is timed from when it was due), instead of ``think_time_s`` after the last one ended.
    pace_s: float | None = None
    #: Iterations are meant to last until the run ends (``load.hold``): none completing is fine.
    hold: bool = False
    #: Closed model: pause after a failed iteration, first and longest (doubling in between);
    #: 0 and 0 turn it off (``runner.load.engine.failure_pause``).
    failure_pause_first_s: float = 0.05
    failure_pause_max_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Threshold:
    """A pass/fail gate such as ``read.p99 < 50ms``, parsed at load (``runner.checks.thresholds``).

    ``subject``: a step name, a step kind (all steps of it), or a run-wide subject (``errors``,
    ``iterations``, ``plan``...); ``stat`` one of the subject's figures in
    ``runner.thresholds.CATALOG``. ``value`` is in the metric's base unit: seconds, a count, a
    fraction (0.1% -> 0.001), or per second. ``accept_no_data``: a metric without samples passes
    instead of losing the threshold. ``default``: one of the plan checks every load run gets,
    replaced by the user's own threshold on the same ``subject.stat``.
    """

    expression: str
    subject: str
    stat: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: float
    location: Location
    abort_on_fail: bool = False
    accept_no_data: bool = False
    default: bool = False


# --- per-user data ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataSet:
    """A data file of rows (``data: {NAME: {file, pick, exhausted, secret}}``), loaded once per
    process and shared by its users: ``rows`` hold the values in ``columns`` order (a tuple per
    row, not a dict: 100,000 rows cost what their values do); each iteration picks one
    (``runner.engine.data``) and sees it as ``{{ NAME.COLUMN }}``."""

    name: str
    file: str
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]
    pick: Literal["sequential", "random", "unique"] = "sequential"
    exhausted: Literal["stop", "fail"] = "stop"
    secret: frozenset[str] = frozenset()
    location: Location = field(default_factory=lambda: Location("", 0, 0))


# --- the scenario -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """One validated scenario file. ``secrets`` lists every value known at load time that outputs
    must mask (``${ENV}`` values, sensitive header literals, private keys, userinfo, the values of
    secret variables); values made at run time are registered by the engine."""

    name: str
    file: str
    steps: tuple[Step, ...]
    connections: Mapping[str, ConnectionSpec]
    description: str = ""
    tags: tuple[str, ...] = ()
    #: The seed of the users' drawn think times (``runner.scenario.draws``); None: the run picks one.
    seed: int | None = None
    target: str | None = None  # base URL, or "embedded" / "embedded-tls"
    variables: Mapping[str, object] = field(default_factory=frozen_map)
    data: Mapping[str, DataSet] = field(default_factory=frozen_map)  # type: ignore[arg-type]
    load: LoadSpec | None = None
    thresholds: tuple[Threshold, ...] = ()
    read_timeout_s: float = 10.0  # default for reads without their own time-out
    run_timeout_s: float = 300.0  # overall bound of a check run (the manual's "unlimited" is not)
    secrets: frozenset[str] = frozenset()
    source: str = ""  # the file's text with secrets masked, for reports
    #: A plan (``populations:``) instead of steps: each population is a scenario of its own,
    #: named by its population and with its own load, run beside the others in one run
    #: (``runner.load.populations``). The plan itself has no steps; its ``load`` is what the
    #: run as a whole needs (workers, peak users, longest duration), its thresholds run-wide.
    populations: tuple[Scenario, ...] = ()
