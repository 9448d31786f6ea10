"""JUnit XML: one testcase per scenario, its failing steps in the failure text, so GitLab, Jenkins
and GitHub show each scenario as a test. A pure function of the results."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath

from runner.reports import console
from runner.reports.masking import Masker
from runner.results.result import RunResult

__all__ = ["render"]

_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str, masker: Masker | None) -> str:
    if masker is not None:
        text = masker.text(text)
    return _INVALID_XML.sub("?", text)


def _failure_text(result: RunResult) -> str:
    lines = []
    for s in result.steps:
        if s.failures:
            where = f"{result.file_of(s.name)}:{s.line}"
            lines.append(f"{where} step {s.name!r} ({s.kind}): {s.failures} of {s.count} failed")
            for e in s.errors:
                lines.append(f"    {e.count} x rc {e.rc}: {e.message}")
    for f in result.failures:
        lines.append(f"{result.file_of(f.step)}:{f.line} {f.step}: expected {f.expected} | actual {f.actual}")
    for t in result.thresholds:
        if not t.passed:
            lines.append(f"{t.file or result.scenario_file}:{t.line} threshold {t.expression}: {t.message}")
    if result.error:
        lines.append(result.error)
    return "\n".join(lines)


def _failure_message(result: RunResult) -> str:
    failed = [s for s in result.steps if s.failures]
    if failed:
        first = failed[0]
        msg = first.errors[0].message if first.errors else "failed"
        return f"step {first.name!r} (line {first.line}): {msg}"
    lost = [t for t in result.thresholds if not t.passed]
    if lost:
        return f"threshold {lost[0].expression}: {lost[0].message}"
    return result.error or "failed"


def render(results: Sequence[RunResult], masker: Masker | None = None) -> str:
    """A ``<testsuites>`` document with one ``<testcase>`` per scenario run."""
    # Here, not at the top: ``wsload run`` imports this module, and ElementTree with pyexpat is
    # 0.7 MiB of every run's memory (RSS at the first connection), most of which write no JUnit.
    import xml.etree.ElementTree as ET

    total_time = sum(r.duration_s for r in results)
    failures = sum(1 for r in results if not r.passed and not r.interrupted and not r.error)
    errors = sum(1 for r in results if r.interrupted or (r.error and not r.passed))
    root = ET.Element(
        "testsuites",
        name="wsload",
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        time=f"{total_time:.3f}",
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name="wsload run",
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{total_time:.3f}",
        timestamp=results[0].started_at if results else "",
    )
    for r in results:
        stem = PurePath(r.scenario_file).stem
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"wsload.{_clean(stem, masker)}",
            name=_clean(r.scenario_name, masker),
            file=_clean(r.scenario_file, masker),
            time=f"{r.duration_s:.3f}",
        )
        if r.interrupted:
            el = ET.SubElement(case, "error", message="interrupted", type="Interrupted")
            el.text = _clean(_failure_text(r) or "interrupted by a signal", masker)
        elif r.error and not r.passed:
            el = ET.SubElement(case, "error", message=_clean(r.error, masker), type="RunError")
            el.text = _clean(_failure_text(r), masker)
        elif not r.passed:
            el = ET.SubElement(
                case, "failure", message=_clean(_failure_message(r), masker), type="ScenarioFailed"
            )
            el.text = _clean(_failure_text(r), masker)
        out = ET.SubElement(case, "system-out")
        out.text = _clean(console.render(r), masker)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
