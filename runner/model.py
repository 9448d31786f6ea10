"""The validated scenario as frozen, typed objects: the only form the engine and reports ever see.

``runner.loader`` builds these from YAML after JSON-Schema and semantic validation; nothing
downstream handles raw dicts. Durations are seconds (float), sizes bytes (int), rates per second.
Every step knows its YAML ``Location`` so a failure can point at the line that declared it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, TypeAlias

from runner.client.options import ALL_SSL_ERRORS, SSL_ERROR_KEYWORDS, IgnoreSslErrors

if TYPE_CHECKING:
    from runner.templates import JsonTemplate, Template

__all__ = [
    "ALL_SSL_ERRORS",
    "SSL_ERROR_KEYWORDS",
    "BinaryPayload",
    "Capture",
    "ClientCertificate",
    "CloseStep",
    "ConnectionSpec",
    "ContentCheck",
    "Expectation",
    "JsonPayload",
    "LoadSpec",
    "Location",
    "Matcher",
    "OpenStep",
    "Payload",
    "PingStep",
    "ReadStep",
    "RepeatStep",
    "Scenario",
    "Secret",
    "SleepStep",
    "Stage",
    "Step",
    "StepKind",
    "TextPayload",
    "Threshold",
    "WriteStep",
    "frozen_map",
]


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
    the engine registers each value it renders for them (``runner.secrets``).
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
class TextPayload:
    """A text frame; the template is rendered per send unless static."""

    template: Template


@dataclass(frozen=True, slots=True)
class JsonPayload:
    """A text frame holding JSON; static values are serialised once at load."""

    value: JsonTemplate


@dataclass(frozen=True, slots=True)
class BinaryPayload:
    """A binary frame: bytes from hex, base64, a file, or a generated size (made at load)."""

    data: bytes


Payload: TypeAlias = "TextPayload | JsonPayload | BinaryPayload"


@dataclass(frozen=True, slots=True)
class ContentCheck:
    """What a received message must satisfy (for ``match`` and for a read's ``expect``).

    Every field that is set must hold. ``that`` holds comparisons such as
    ``("result.count", ">=", 3)``: a JMESPath expression, an operator, a literal.
    """

    text: Template | None = None
    contains: Template | None = None
    regex: str | None = None
    json: JsonTemplate | None = None  # subset match
    json_schema: Mapping[str, object] | None = None
    that: tuple[tuple[str, str, object], ...] = ()
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


class StepKind(StrEnum):
    OPEN = "open"
    WRITE = "write"
    READ = "read"
    CLOSE = "close"
    SLEEP = "sleep"
    PING = "ping"
    REPEAT = "repeat"


@dataclass(frozen=True, slots=True)
class _StepBase:
    """Common to all steps. ``name`` is unique in the scenario (the loader makes default names
    such as ``read main`` or ``read main #2``) and is what thresholds and reports use."""

    name: str
    location: Location
    expect: Expectation = field(default_factory=Expectation)


@dataclass(frozen=True, slots=True)
class OpenStep(_StepBase):
    connection: str = ""
    timeout_s: float | None = None  # overrides the connection's ``timeout``
    kind: StepKind = StepKind.OPEN


@dataclass(frozen=True, slots=True)
class WriteStep(_StepBase):
    connection: str = ""
    payload: Payload | None = None
    kind: StepKind = StepKind.WRITE


@dataclass(frozen=True, slots=True)
class ReadStep(_StepBase):
    connection: str = ""
    timeout_s: float | None = None  # None: the scenario's default read time-out
    match: Matcher | None = None  # wait for the first matching message, skipping others
    captures: tuple[Capture, ...] = ()
    kind: StepKind = StepKind.READ


@dataclass(frozen=True, slots=True)
class CloseStep(_StepBase):
    connection: str = ""
    timeout_s: float | None = None
    kind: StepKind = StepKind.CLOSE


@dataclass(frozen=True, slots=True)
class SleepStep(_StepBase):
    duration_s: float = 0.0
    kind: StepKind = StepKind.SLEEP


@dataclass(frozen=True, slots=True)
class PingStep(_StepBase):
    connection: str = ""
    timeout_s: float | None = None
    kind: StepKind = StepKind.PING


@dataclass(frozen=True, slots=True)
class RepeatStep(_StepBase):
    """Run ``steps`` ``times`` times (the block's own name is for reports of its location)."""

    times: int = 1
    steps: tuple[Step, ...] = ()
    index: str | None = None  # variable set to the round number (0-based) while the block runs
    kind: StepKind = StepKind.REPEAT


Step: TypeAlias = "OpenStep | WriteStep | ReadStep | CloseStep | SleepStep | PingStep | RepeatStep"


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
    """A pass/fail gate such as ``read.p99 < 50ms``, parsed at load (``runner.thresholds``).

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
    target: str | None = None  # base URL, or "embedded" / "embedded-tls"
    variables: Mapping[str, object] = field(default_factory=frozen_map)
    load: LoadSpec | None = None
    thresholds: tuple[Threshold, ...] = ()
    read_timeout_s: float = 10.0  # default for reads without their own time-out
    run_timeout_s: float = 300.0  # overall bound of a check run (the manual's "unlimited" is not)
    secrets: frozenset[str] = frozenset()
    source: str = ""  # the file's text with secrets masked, for reports
