"""The parent's view of a run over worker processes, reduced from their messages without I/O.

``PoolState.apply(worker, message, now_ns)`` is the whole of what a message does: it merges the
worker's delta into the total, updates the worker's status and gauges, and, when the message
ends the run (a ``Failed`` worker), returns the ``Stop`` the parent must send to the workers
still running. Clocks are arguments, so a unit test drives it with no process, pipe or event
loop; ``runner.load.workers.WorkerPool`` moves the messages and keeps time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.load.driver import Gauges
from runner.load.messages import Done, Failed, Ready, Start, Stop, Tick, WorkerInfo, WorkerMessage
from runner.results.recorders import RunRecorder
from runner.results.result import TlsInfo

__all__ = ["PoolState", "WorkerState"]


@dataclass(slots=True)
class WorkerState:
    """One worker as the parent knows it (``number`` is 1-based, as reports name it)."""

    number: int
    ready: bool = False  # its scenario is loaded
    done: bool = False  # it sent its last message (``Done`` or ``Failed``)
    dead: bool = False  # it ended without one: killed, crashed, or cut off by the parent
    error: str = ""  # the text of its ``Failed``
    gauges: Gauges = field(default_factory=Gauges)  # as of its latest ``Tick``; zero once ended
    info: WorkerInfo | None = None  # from its ``Done``

    @property
    def ended(self) -> bool:
        return self.done or self.dead


class PoolState:
    """All workers, the total of their deltas, and the run's stop (the first reason wins)."""

    def __init__(self, workers: int, *, patience_ns: int) -> None:
        """``patience_ns``: how long after a stop (or after the plan's end) the workers may take
        to end gracefully before the parent kills them."""
        self.workers = tuple(WorkerState(n) for n in range(1, workers + 1))
        self.total = RunRecorder(0)
        self.patience_ns = patience_ns
        self.stop_reason = ""
        self.stopped_at_ns: int | None = None
        self.stop_deadline_ns: int | None = None  # when workers told to stop must have ended
        self.hard_end_ns: int | None = None  # when the plan, its grace and the patience are over

    def worker(self, number: int) -> WorkerState:
        return self.workers[number - 1]

    # --- transitions ------------------------------------------------------------------------------

    def apply(self, number: int, message: WorkerMessage, now_ns: int) -> Stop | None:
        """Reduce one message of worker ``number``; the ``Stop`` to send to the workers still
        running when the message ends the run, else None."""
        w = self.worker(number)
        match message:
            case Ready():
                w.ready = True
            case Tick(delta, gauges):
                self.total.merge(delta)
                w.gauges = gauges
            case Done(delta, info):
                self.total.merge(delta)
                w.info = info
                w.done = True
                w.gauges = Gauges()
            case Failed(text):
                w.error = text
                w.done = True
                return self.stop(f"worker {number}: {text}", now_ns)
        return None

    def died(self, number: int) -> None:
        """Worker ``number`` ended without its last message: what it sent before is kept, and
        it is named incomplete."""
        w = self.worker(number)
        if w.ended:
            return
        w.dead = True
        w.gauges = Gauges()

    def stop(self, reason: str, now_ns: int) -> Stop:
        """Stop the run (the first reason is the run's); the ``Stop`` to send to the workers
        still running (sent again on a second signal: they then cancel in-flight iterations)."""
        if not self.stop_reason:
            self.stop_reason = reason
            self.stopped_at_ns = now_ns
            self.stop_deadline_ns = now_ns + self.patience_ns
        return Stop(reason)

    def start(self, start_ns: int, planned_s: float | None) -> Start:
        """The shared start, ``planned_s`` after which (plus the patience) the run is overdue
        (None: only an iteration count bounds the plan)."""
        for rec in self.total.every():
            rec.start_ns = start_ns
        if planned_s is not None:
            self.hard_end_ns = start_ns + round(planned_s * 1e9) + self.patience_ns
        return Start(start_ns)

    # --- questions --------------------------------------------------------------------------------

    def all_started(self) -> bool:
        return all(w.ready or w.ended for w in self.workers)

    def not_started(self) -> list[int]:
        return [w.number for w in self.workers if not (w.ready or w.ended)]

    def all_ended(self) -> bool:
        return all(w.ended for w in self.workers)

    def running(self) -> list[int]:
        """The workers that have neither sent their last message nor died."""
        return [w.number for w in self.workers if not w.ended]

    def alive(self) -> list[int]:
        return [w.number for w in self.workers if not w.dead]

    def overdue(self, now_ns: int) -> bool:
        """Whether the workers still running are past the parent's patience (to be killed)."""
        return any(end is not None and now_ns > end for end in (self.hard_end_ns, self.stop_deadline_ns))

    def gauges(self) -> Gauges:
        """The gauges summed over the workers (an ended worker counts zero)."""
        return Gauges.total([w.gauges for w in self.workers])

    def errors(self) -> list[str]:
        return [f"worker {w.number}: {w.error}" for w in self.workers if w.error]

    def incomplete(self) -> list[int]:
        return [w.number for w in self.workers if w.dead]

    def problems(self, exit_codes: Mapping[int, int | None]) -> list[str]:
        """The run's problems: each failed worker's text, then how each dead worker ended."""
        problems = self.errors()
        for number in self.incomplete():
            code = exit_codes.get(number)
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            problems.append(f"worker {number} died ({how})")
        return problems

    def final_stop_reason(self) -> str:
        """The run's stop reason, else the first a worker's engine gave."""
        reasons = (w.info.stop_reason for w in self.workers if w.info is not None)
        return self.stop_reason or next((r for r in reasons if r), "")

    def stopped_at_s(self) -> float | None:
        if self.stopped_at_ns is None:
            return None
        return (self.stopped_at_ns - self.total.start_ns) / 1e9

    def own_stops(self) -> dict[str, tuple[str, float]]:
        """Engines that ended themselves in every worker (a data file run out everywhere):
        population ("" for a lone scenario) -> (reason, seconds after the start the last of them
        ended). One that ran on in any worker ran the plan's length: none for it."""
        infos = [w.info for w in self.workers if w.info is not None]
        if not infos:
            return {}
        out: dict[str, tuple[str, float]] = {}
        for name, reason, _at in infos[0].own_stops:
            ends = [at for info in infos for n, _r, at in info.own_stops if n == name]
            if len(ends) == len(infos):
                out[name] = (reason, (max(ends) - self.total.start_ns) / 1e9)
        return out

    def max_active_each(self) -> tuple[int, ...]:
        """A plan's: the most users active at once per population, summed over the workers."""
        parts = [w.info.population_max_active for w in self.workers if w.info is not None]
        width = max((len(p) for p in parts), default=0)
        return tuple(sum(p[i] for p in parts if i < len(p)) for i in range(width))

    def max_active(self) -> int:
        return sum(w.info.max_active for w in self.workers if w.info is not None)

    def tls(self) -> TlsInfo:
        """How certificates were treated, over every worker that reported it."""
        infos = [w.info.tls for w in self.workers if w.info is not None and w.info.tls is not None]
        if not infos:
            return TlsInfo()
        return TlsInfo(
            verified=all(i.verified for i in infos),
            ignored_errors=tuple(sorted({e for i in infos for e in i.ignored_errors})),
            allowed=tuple(sorted({e for i in infos for e in i.allowed})),
        )
