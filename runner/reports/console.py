"""The console report: a compact table per scenario, grouped errors with step and YAML line, and a
final PASS/FAIL line, readable in a CI log. A pure function of the result."""

from __future__ import annotations

from collections.abc import Sequence

from runner.reports.masking import Masker
from runner.results.result import RunResult, StepResult

__all__ = [
    "LATENCY_LEGEND",
    "POPULATION_COLUMNS",
    "population_row",
    "render",
    "status_word",
    "summary_line",
    "verdict_line",
]

_COLUMNS = ("step", "kind", "line", "count", "ok", "fail", "skip", "pend", "rc", "p50 ms", "p99 ms", "max ms")


#: What each kind's latency covers, said under every table (one meaning per figure).
LATENCY_LEGEND = (
    "latency ms: open, the whole connect; write, the write call; read, from the request handed to "
    "the kernel to the answer parsed; receive, how long it lasted; ping, the round trip; close, the "
    "close handshake"
)


def status_word(result: RunResult) -> str:
    if result.interrupted:
        return "INTERRUPTED"
    return "PASS" if result.passed else "FAIL"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _rc(step: StepResult) -> str:
    if not step.rc:
        return "-"
    return " ".join(f"{code}:{n}" for code, n in step.rc.items())


def _row(step: StepResult, received: bool = False) -> tuple[str, ...]:
    """A step's row; ``received``: the table has a ``recv`` column (a receive step is in it)."""
    lat = step.latency_ms
    return (
        step.name,
        step.kind,
        str(step.line),
        str(step.count),
        str(step.ok),
        str(step.failures),
        str(step.skipped),
        str(step.pending),
        *((str(step.received) if step.kind == "receive" else "-",) if received else ()),
        _rc(step),
        _ms(lat.p50 if lat else None),
        _ms(lat.p99 if lat else None),
        _ms(lat.max if lat else None),
    )


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:], strict=True)]
        out.append("  " + "  ".join(cells).rstrip())
    return out


POPULATION_COLUMNS = (
    "population",
    "file",
    "model",
    "users",
    "done",
    "failed",
    "cut",
    "per s",
    "plan",
    "verdict",
    "stopped early",
)


def population_row(p: RunResult) -> tuple[str, ...]:
    """A population beside the others: its load, iterations, rate, plan delivered, verdict."""
    load = p.settings.load
    plan = load.plan if load is not None else None
    delivered = plan.delivered if plan is not None else None
    it = p.iterations
    return (
        p.scenario_name,
        p.scenario_file,
        load.model if load is not None else "-",
        f"{load.vus_max_active or 0:,}" if load is not None else "-",
        f"{it.completed:,}",
        f"{it.failed:,}",
        f"{it.interrupted:,}",
        f"{load.achieved_rate:,.1f}" if load is not None else "-",
        f"{delivered:.0%}" if delivered is not None else "-",
        status_word(p),
        _short(load.stop_reason) if load is not None and load.stop_reason else "-",
    )


def verdict_line(result: RunResult) -> str:
    """``PASS smoke (scenarios/smoke.yaml): 7 steps, 0 failed, 0.21s``."""
    steps = sum(s.count for s in result.steps)
    failed = sum(s.failures for s in result.steps)
    line = (
        f"{status_word(result)} {result.scenario_name} ({result.scenario_file}): "
        f"{steps} steps run, {failed} failed"
    )
    skipped = sum(s.skipped for s in result.steps)
    if skipped:
        line += f", {skipped} skipped"
    lost = sum(1 for t in result.thresholds if not t.passed)
    if lost:
        line += f", {lost} threshold{'s' if lost > 1 else ''} lost"
    other = result.error
    for problem in result.problems:
        other = other.replace(problem, "")
    other = "; ".join(x.strip() for x in other.split("; ") if x.strip())
    if other:
        line += f", {other}"
    if result.problems:
        n = len(result.problems)
        first = _short(result.problems[0].split("; ")[0])
        line += f", {n} problem{'s' if n > 1 else ''}: {first}" + (
            " ..." if n > 1 or first != result.problems[0] else ""
        )
    elif not result.passed and not other:
        reason = _first_reason(result)
        if reason:
            line += f" ({reason})"
    return line + f", {result.duration_s:.3f}s"


#: The longest reason a verdict line quotes: one line a monitor can show (``-q``, ``--every``).
VERDICT_REASON_CHARS = 160


def _short(text: str) -> str:
    return text if len(text) <= VERDICT_REASON_CHARS else text[: VERDICT_REASON_CHARS - 1] + "\u2026"


def _first_reason(result: RunResult) -> str:
    """Why a failed run failed, in a few words: its first failure, else its first lost threshold."""
    if result.failures:
        first = result.failures[0]
        return _short(f"first: {first.step}: {first.message}")
    lost = next((t for t in result.thresholds if not t.passed), None)
    return _short(f"first: {lost.expression}: {lost.message}") if lost is not None else ""


def render(result: RunResult, masker: Masker | None = None, *, verbose: bool = False) -> str:
    """The table, errors, failures and thresholds of one scenario, then its verdict line."""
    lines = [f"{result.scenario_name} ({result.scenario_file}) against {result.target or '-'}"]
    if result.steps:
        # A ``recv`` column (messages a receive took) only when a receive step is there.
        received = any(s.kind == "receive" for s in result.steps)
        head = (*_COLUMNS[:8], "recv", *_COLUMNS[8:]) if received else _COLUMNS
        lines += _table([head, *(_row(s, received) for s in result.steps)])
    if verbose:
        for s in result.steps:
            if s.connect_ms:
                parts = ", ".join(f"{k} p50 {_ms(v.p50)} p99 {_ms(v.p99)}" for k, v in s.connect_ms.items())
                lines.append(f"  connect {s.name}: {parts} (ms)")
            if s.skipped_messages:
                lines.append(f"  {s.name}: {s.skipped_messages} messages skipped while matching")
    if result.populations:
        lines += [
            "populations:",
            *_table([POPULATION_COLUMNS, *(population_row(p) for p in result.populations)]),
        ]
    if any(s.latency_ms for s in result.steps):
        lines.append(f"  ({LATENCY_LEGEND})")
    for s in result.steps:
        resp = s.response_ms
        if resp is not None and s.latency_ms is not None:
            lines.append(
                f"  {s.name}: response time p50 {_ms(resp.p50)} p99 {_ms(resp.p99)} max {_ms(resp.max)} ms "
                "(from the asking write step's start to the read's end: what the scenario saw)"
            )
        deliv = s.delivery_ms
        if deliv is not None:
            ahead = (
                f"; {s.delivery_ahead} stamped after they arrived, counted as 0" if s.delivery_ahead else ""
            )
            lines.append(
                f"  {s.name}: delivery p50 {_ms(deliv.p50)} p99 {_ms(deliv.p99)} max {_ms(deliv.max)} ms "
                f"(from the send time stamped in the message, the sender's clock, to its parse here{ahead})"
            )
        reach = s.reach
        if reach is not None:
            last = reach.time_ms
            until = (
                f"; until its last reader p50 {_ms(last.p50)} p99 {_ms(last.p99)} max {_ms(last.max)} ms"
                if last
                else ""
            )
            over = f"; {reach.overflow} deliveries beyond the id cap not counted" if reach.overflow else ""
            lines.append(
                f"  {s.name}: reach of {reach.messages} messages: received by {reach.receivers_min} to "
                f"{reach.receivers_max} reads each (median {reach.receivers_median:g}){until}{over}"
            )
        if s.kind == "receive" and s.received:
            rate = f" ({s.received / result.duration_s:,.1f}/s over the run)" if result.duration_s > 0 else ""
            lines.append(
                f"  {s.name}: received {s.received:,} messages{rate}, the longest wait for one "
                f"{_ms(s.received_gap_max_ms)} ms"
            )
        if s.pending:
            lines.append(
                f"  {s.name}: {s.pending} still in flight when the run ended (waited up to "
                f"{_ms(s.pending_max_ms)} ms, mean {_ms(s.pending_mean_ms)} ms)"
            )
        if s.closes:
            closes = ", ".join(f"{n} x {key}" for key, n in s.closes.items())
            lines.append(f"  {s.name}: peer closed: {closes}")
    errors = [(s, e) for s in result.steps for e in s.errors]
    if errors:
        lines.append("errors:")
        shown = errors if verbose else errors[:20]
        for s, e in shown:
            lines.append(f"  {result.file_of(s.name)}:{s.line} {s.name}: {e.count} x rc {e.rc}: {e.message}")
        if len(errors) > len(shown):
            lines.append(f"  ... {len(errors) - len(shown)} more error groups (--verbose or the JSON report)")
    if verbose and result.failures:
        lines.append("failures:")
        for f in result.failures:
            lines.append(f"  {result.file_of(f.step)}:{f.line} {f.step}: {f.message}")
            lines.append(f"      expected: {f.expected}")
            lines.append(f"      actual:   {f.actual}")
    if not result.tls.verified:
        met = ", ".join(result.tls.ignored_errors) or "none met"
        allowed = ", ".join(result.tls.allowed) or "-"
        lines.append(f"TLS: certificate verification relaxed (allowed: {allowed}); ignored: {met}")
    if result.thresholds:
        lines.append("thresholds:")
        for t in result.thresholds:
            word = "pass" if t.passed else "LOST"
            # line 0: given on the command line, or a plan check every load run gets
            where = "plan check" if t.default else f"line {t.line}" if t.line else "--threshold"
            if t.line and not t.default and t.file and t.file != result.scenario_file:
                where = f"{t.file} line {t.line}"
            lines.append(f"  {word} {t.expression} ({where}): {t.message}")
    if result.problems:
        lines.append("problems (each fails the run):")
        lines += [f"  {p}" for p in result.problems]
    if result.interrupted:
        lines.append("interrupted: the report holds what was measured until the signal")
    lines.append(verdict_line(result))
    text = "\n".join(lines) + "\n"
    return masker.text(text) if masker is not None else text


def summary_line(results: Sequence[RunResult]) -> str:
    """One last line over several scenarios: ``PASS 3 scenarios`` / ``FAIL 1 of 3 scenarios``."""
    failed = [r for r in results if not r.passed]
    if any(r.interrupted for r in results):
        return f"INTERRUPTED after {len(results)} scenario(s), {len(failed)} not passed"
    if failed:
        return f"FAIL {len(failed)} of {len(results)} scenarios: " + ", ".join(
            r.scenario_name for r in failed
        )
    return f"PASS {len(results)} scenarios"
