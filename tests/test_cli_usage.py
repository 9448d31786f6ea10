"""The command line as a user meets it: output into a closed pipe, report directories that cannot
be written, options that cannot work together, misspelt ``--var`` names, where reports went, and
the help text. Real processes where the behaviour is the process's (exit code, pipes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import scaled

from runner.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "scenarios" / "smoke.yaml"
RPC = ROOT / "scenarios" / "rpc.yaml"


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGS`` with stdout a pipe whose reader has already gone (``| head`` that
    has read its line): every write to it fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "runner", *args],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=scaled(60),
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ("schema",),
        ("validate", str(SMOKE), str(RPC)),
        ("validate", str(SMOKE), "--quiet", str(ROOT / "tests" / "broken" / "no_steps.yaml")),
    ],
    ids=["schema", "validate", "validate_invalid"],
)
def test_closed_pipe_ends_quietly_with_the_commands_exit_code(args: tuple[str, ...]) -> None:
    """``wsload schema | head -1``, ``wsload validate ... | head -1``: no BrokenPipeError traceback
    and no 'Exception ignored' line; the exit code is the command's own (0 valid, 2 invalid)."""
    proc = _into_closed_pipe(*args)
    expected = 2 if args[-1].endswith("no_steps.yaml") else 0
    assert proc.returncode == expected, proc.stderr
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr
    assert "Exception ignored" not in proc.stderr


def test_closed_pipe_during_a_run_still_writes_its_reports(tmp_path: Path) -> None:
    """``wsload run ... | head -1``: the run goes on once its reader has gone, writes its JSON report
    and exits with its own code (0), quietly."""
    proc = _into_closed_pipe("run", str(SMOKE), "--report-dir", "", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True


def test_broken_file_fixture_is_invalid() -> None:
    """The invalid file the pipe test uses is invalid (so that test checks exit 2 for a reason)."""
    assert main(["validate", "--quiet", str(ROOT / "tests" / "broken" / "no_steps.yaml")]) == 2


@pytest.mark.parametrize(
    "option",
    ["--report-dir", "--json", "--junit", "--html", "--prometheus-textfile"],
)
def test_unwritable_report_location_exits_3_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    """A report directory that cannot be made (a regular file is in its path) is exit 3 with
    ``cannot write reports to DIR`` before anything runs: no verdict line, no run."""
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a directory")
    directory = blocker / "sub"
    target = str(directory) if option == "--report-dir" else str(directory / "report.out")
    extra = [] if option == "--report-dir" else ["--report-dir", ""]
    code = main(["run", str(ROOT / "tests" / "failing" / "long_sleep.yaml"), option, target, *extra])
    out, err = capsys.readouterr()
    assert code == 3, err
    assert f"wsload: cannot write reports to {directory}: Not a directory" in err
    assert out == ""  # nothing ran: long_sleep.yaml would have printed its verdict after 30 s


def test_read_only_report_directory_exits_3_before_running(capsys: pytest.CaptureFixture[str]) -> None:
    """A report directory on a read-only file system is exit 3 before the run (checked by writing
    a probe file; /proc/self is read-only even for root)."""
    code = main(["run", str(ROOT / "tests" / "failing" / "long_sleep.yaml"), "--report-dir", "/proc/self"])
    out, err = capsys.readouterr()
    assert code == 3, err
    assert "wsload: cannot write reports to /proc/self:" in err and out == ""


def test_missing_report_directory_is_made_and_probe_left_nowhere(tmp_path: Path) -> None:
    """A report directory that does not exist yet is made before the run; the probe file is gone."""
    directory = tmp_path / "a" / "b"
    assert main(["run", str(SMOKE), "--report-dir", str(directory), "-q"]) == 0
    names = sorted(p.name for p in directory.iterdir())
    assert len(names) == 2 and all(n.startswith("wsload-") for n in names), names


def test_default_run_says_where_its_reports_went(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A default run ends with one ``reports: ...`` line on stderr naming every file written (the
    verdict stays the last line on stdout); ``-q`` keeps it quiet."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(SMOKE), "--html", "page.html"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("PASS echo smoke")
    written = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "reports").iterdir())
    line = err.splitlines()[-1]
    assert line.startswith("reports: ") and sorted(line[len("reports: ") :].split(", ")) == sorted(
        [*written, "page.html"]
    )
    assert all((tmp_path / path).is_file() for path in line[len("reports: ") :].split(", "))
    assert main(["run", str(SMOKE), "-q"]) == 0
    assert "reports:" not in capsys.readouterr().err


def test_misspelt_var_warns_with_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    """``--var sesion=1`` for a scenario that uses ``session`` warns on stderr, with a did-you-mean,
    in ``run`` and in ``validate``; a name the scenario uses does not warn."""
    assert main(["run", str(RPC), "--var", "sesion=1", "--report-dir", "", "-q"]) == 0
    err = capsys.readouterr().err
    assert f"wsload: warning: --var sesion: {RPC} uses no variable 'sesion'; did you mean 'session'?" in err
    assert main(["validate", str(RPC), "--var", "sesion=1"]) == 0
    assert "did you mean 'session'?" in capsys.readouterr().err
    assert main(["validate", str(RPC), "--var", "payload=1"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("source", ["option", "environment"])
def test_start_at_without_shard_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """``--start-at`` (or WSLOAD_START_AT) without ``--shard``/``--cluster`` is exit 2 with a clear
    message, instead of being ignored in silence."""
    args = ["run", str(SMOKE), "--report-dir", ""]
    if source == "option":
        args += ["--start-at", "2026-11-25T21:30:00Z"]
    else:
        monkeypatch.setenv("WSLOAD_START_AT", "2026-11-25T21:30:00Z")
    assert main(args) == 2
    out, err = capsys.readouterr()
    given = "--start-at" if source == "option" else "WSLOAD_START_AT"
    assert f"wsload: {given} '2026-11-25T21:30:00Z' needs --shard K/N (or --cluster)" in err
    assert out == ""


def test_serve_help_reads_as_sentences(capsys: pytest.CaptureFixture[str]) -> None:
    """``wsload serve --help`` says in whole sentences what --mtls and --processes do."""
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "require a client certificate (implies --tls) signed by a CA in --client-ca; without "
        "--client-ca a CA is generated, and a client certificate it signed and its key are "
        "written to files whose paths are printed (removed at exit)"
    ) in text
    assert (
        "for runs with more connections than one process can hold (about 20,000 open files each) "
        "or more messages than one process can echo (default 1)"
    ) in text
