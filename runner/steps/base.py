"""What a step kind is, and the narrow views it gets of the loader and of the virtual user.

A step kind is one module of this package (``runner/steps/<kind>.py``) that defines ``KIND``, a
``Kind``: its frozen model class (a ``StepBase`` with its own fields, its YAML key as ``kind``
and its ``success`` rule), its JSON Schema fragment, ``parse`` (YAML node -> model object, every
problem reported through the loader's ``StepParse`` view) and ``execute`` (one execution, through
the ``User`` view of the virtual user running it). The loader, the schema and the engine find
the kinds in ``runner.steps.KINDS``; a new kind touches its own module, its tests and the docs.

``execute(step, user) -> StepOutcome | int | None``: it moves messages and time through the user's client
and hands what came back to the pure checks of ``runner.checks.expect``; ``finish`` applies the
checks every kind shares (rc, error, latency). The engine records the outcome; kinds never touch
recorders (a streaming step hands each message it took to ``User.received``). An ``int`` is the
per-message shortcut: the step passed with its kind's success and has nothing to record but this
latency in ns (no rc, error, timing or skipped messages); it is what ``StepOutcome(rc, latency)``
would say, without building one twice per round trip (measured: a frozen outcome per message cost
~0.4 us of the round trip's ~11). ``None`` is the waiting shortcut: the step passed with its kind's
success and its latency is the time since it began (``User.step_started_ns``); a step that only
waits (``sleep``) returns the wait's future itself, so a user holding a connection through a long
wait keeps no coroutine frame for the step (~250 bytes per user, 3,000 held, tracemalloc).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from runner.checks.expect import Failure, check_error, check_latency, check_rc
from runner.scenario.model import Capture, ContentCheck, Expectation, Location, Scenario, StepBase

if TYPE_CHECKING:
    import asyncio

    from runner.client import WebSocketClient
    from runner.client.codes import ConnectTiming
    from runner.client.options import ConnectOptions
    from runner.scenario.secrets import SecretRegistry
    from runner.scenario.source import Path
    from runner.scenario.templates import JsonTemplate, Template

__all__ = [
    "Kind",
    "RunView",
    "StepNode",
    "StepOutcome",
    "StepParse",
    "User",
    "finish",
    "not_open",
    "render_error",
]


# --- the loader's side --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepNode:
    """One step's YAML mapping as a kind's parser gets it: ``raw`` the whole mapping (``name``,
    ``expect``, ``capture``, ``timeout`` ...), ``body`` the value under the kind's key, the common
    fields already built, and ``on_purpose``: the step expects an rc or an error, so a use that
    would otherwise be a mistake (a read after close) is deliberate."""

    raw: Mapping[str, Any]
    path: Path
    kind: str
    location: Location
    expect: Expectation
    on_purpose: bool

    @property
    def body(self) -> Any:
        return self.raw[self.kind]

    @property
    def body_path(self) -> Path:
        return (*self.path, self.kind)


class StepParse(Protocol):
    """What a kind's ``parse`` may use of the loader (``runner.loader``): every problem goes
    through it, positioned, and it knows the scenario's names, connections and variables."""

    def problem(self, path: Path, message: str, *, key: bool = False) -> None: ...
    def name(self, node: StepNode, default: str) -> str: ...
    def connection(self, node: StepNode, use: Literal["opens", "closes", "uses"]) -> str: ...
    def timeout(self, node: StepNode) -> float | None: ...
    def duration(self, value: object, path: Path) -> float: ...
    def size(self, value: object, path: Path) -> int: ...
    def template(self, text: str, path: Path) -> Template: ...
    def json_template(self, value: object, path: Path) -> JsonTemplate: ...
    def content(self, raw: dict[str, Any], path: Path) -> ContentCheck: ...
    def captures(self, raw: dict[str, Any], path: Path) -> tuple[Capture, ...]: ...
    def read_file(self, rel: str, path: Path, *, binary: bool = False) -> str | bytes | None: ...
    def is_variable(self, name: str) -> bool: ...
    @property
    def nesting(self) -> int: ...  # the product of the enclosing blocks' repetitions
    def block(
        self, items: list[Any], path: Path, *, times: int, index: str | None
    ) -> tuple[StepBase, ...]: ...


# --- the engine's side --------------------------------------------------------------------------


class RunView(Protocol):
    """What a step may use of the run it belongs to (``runner.engine.vu.RunContext``)."""

    @property
    def scenario(self) -> Scenario: ...
    @property
    def target(self) -> str | None: ...
    @property
    def secrets(self) -> SecretRegistry: ...
    @property
    def seed(self) -> int: ...  # of the users' random draws (``runner.scenario.draws``)

    #: (id(open step), source address) -> URL and options prepared once (``runner.steps.open``)
    opens: dict[tuple[int, str | None], tuple[str, ConnectOptions]]

    def adjust_options(self, options: ConnectOptions) -> ConnectOptions: ...
    def note_tls(self, verified: bool, ignored: tuple[str, ...], all_ignored: bool) -> None: ...


class User(Protocol):
    """What a step may use of the virtual user running it (``runner.engine.vu.VirtualUser``)."""

    @property
    def ctx(self) -> RunView: ...
    @property
    def client(self) -> WebSocketClient: ...

    id: int  # the user's number, global across workers and shards
    draws: int  # random draws made so far (``runner.scenario.draws``)
    sockets: dict[str, int]  # connection name -> socket number
    variables: dict[str, Any]
    requests: dict[str, int]  # connection -> when its last write step began (a response's start)
    step_started_ns: int  # set by each step when it begins (for the report of a cut step)
    source_address: str | None

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait ``seconds`` (a ``sleep`` step): the users of a run share one loop timer for it
        (``runner.client.timers``) instead of a timer each, as ``asyncio.sleep`` makes: a
        sleeping user holding a connection then costs ~320 bytes less (S3 of the independent
        benchmark)."""
        ...

    async def run_steps(
        self, steps: tuple[StepBase, ...], times: int = 1, index: str | None = None
    ) -> int | None: ...

    def backgrounds_use(self, connection: str) -> bool:
        """Whether a background of the user (``every``, wherever started) uses ``connection``."""

    def start_background(
        self,
        rounds: Callable[[User, asyncio.Future[None]], Coroutine[Any, Any, int | None]],
        uses: frozenset[str],
    ) -> None:
        """Run ``rounds(branch, stop)`` in the background until the block it was started in ends
        (or a step closes a connection in ``uses``): ``branch`` is this user with its own step in
        flight; ``stop`` is set when it must start no more rounds; it returns the failed round."""

    async def release(self, connection: str) -> None:
        """Before ``connection`` closes: stop the backgrounds using it (wherever they were started),
        at the end of their round."""

    async def run_branches(self, branches: tuple[tuple[StepBase, ...], ...]) -> int | None:
        """Run the branches at the same time, each on a branch of this user; the number (1-based)
        of the first that failed (the others abandoned), or None when all passed."""

    def received(
        self, step: StepBase, arrived_ns: int, delivery_ns: int | None, message_id: str | None = None
    ) -> None:
        """One message a streaming step took (``receive``), recorded at once: counted in the
        step's ``received`` and in the messages of the second it arrived in (monotonic
        ``arrived_ns``, the client's ``ReadResult.received_ns``), with its delivery latency and,
        with ``latency_from.id``, its id (for its reach)."""
        ...


# --- a kind -------------------------------------------------------------------------------------


@dataclass(slots=True)
class StepOutcome:
    """What one execution of a step produced. ``failure`` is None when every expectation held.

    ``error`` is the client's last-error text (or our own) when the rc was not a success;
    ``record`` is False for blocks (``repeat``) whose inner steps are recorded themselves.
    """

    rc: int
    latency_ns: int | None = None
    failure: Failure | None = None
    error: str | None = None
    skipped_messages: int = 0
    timing: ConnectTiming | None = None
    record: bool = True
    rc_ok: bool = True  # rc is the kind's success (not counted in the report's rc)
    #: A read that returned 1: the peer's close code (None: no close frame) and reason.
    closed: tuple[int | None, str] | None = None
    #: A read with ``latency_from``: from the message's send stamp to its parse (wall clocks).
    delivery_ns: int | None = None
    #: A read with ``latency_from.id``: the message's id, whose receivers make its reach.
    message_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


Parse = Callable[[StepNode, StepParse], StepBase]
Execute = Callable[[Any, User], Awaitable["StepOutcome | int | None"]]


@dataclass(frozen=True, slots=True)
class Kind:
    """One step kind (see the module docstring). ``operation``: an operation on the network that
    can fail, counted by ``errors.rate`` (not a sleep or a block); ``message``: a success moves a
    message (counted in ``messages``); ``answer``: a read, whose latency goes into the per-second
    series and which records a response time; ``content``: its ``expect`` may check content;
    ``reads``: it takes messages off its connection (two at once on one connection would take
    each other's); ``alongside``: its inner steps run in the background beside the steps after
    it (``every``), so the loader checks the two never read one connection."""

    name: str
    step: type[StepBase]
    schema: Mapping[str, Any]  # the JSON Schema of the whole step mapping (``$defs/<name>Step``)
    parse: Parse
    execute: Execute
    operation: bool = True
    message: bool = False
    answer: bool = False
    content: bool = False
    reads: bool = False
    alongside: bool = False
    summary: str = ""  # one line for the docs' table of steps


def finish(
    step: StepBase,
    rc: int,
    latency_ns: int | None,
    error: str | None = None,
    keyword: str | None = None,
    *,
    content_failure: Failure | None = None,
    skipped_messages: int = 0,
    timing: ConnectTiming | None = None,
) -> StepOutcome:
    """Apply the checks every kind shares: rc (expected, or the kind's success rule),
    ``expect.error``, ``expect.latency``."""
    expect = step.expect
    success = type(step).success
    if error is None and content_failure is None and expect.outcome_default and success.holds(rc):
        # The success path of a step without expectations: the checks below would all pass;
        # what they would build is built here directly.
        return StepOutcome(rc, latency_ns, None, None, skipped_messages, timing, True, True)
    failure = check_rc(step.kind, success, expect, rc)
    if failure is not None and error:
        failure = Failure(f"{failure.message}: {error}", failure.expected, error)
    if failure is None:
        failure = check_error(expect, error, keyword)
    if failure is None:
        failure = content_failure
    if failure is None:
        failure = check_latency(expect, latency_ns)
    rc_ok = success.holds(rc)
    return StepOutcome(
        rc=rc,
        latency_ns=latency_ns,
        failure=failure,
        error=None if rc_ok else error,
        skipped_messages=skipped_messages,
        timing=timing,
        rc_ok=rc_ok,
    )


def not_open(step: StepBase, connection: str) -> StepOutcome:
    """The outcome of using a connection that is not open (never opened, or closed)."""
    return finish(step, -1, None, f"connection {connection!r} is not open")


def render_error(exc: BaseException) -> str:
    """The text of a template that could not be rendered at run time (a missing capture)."""
    return f"template error: {exc}"
