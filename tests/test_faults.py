"""Faults of the run itself, with ``wsload run`` as a process: a full disk when the reports are
written, and the file-descriptor limit reached while opening connections. (SIGINT and SIGTERM
during a run are tests/test_run_signals.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from conftest import scaled

from runner.server import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "scenarios" / "smoke.yaml"


def _wsload(*args: str, preexec_fn: Callable[[], object] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(30),
        preexec_fn=preexec_fn,
    )


@contextlib.contextmanager
def full_disk(directory: Path, keep: dict[str, str]) -> Iterator[Path]:
    """A 64 KiB tmpfs at ``directory`` holding ``keep`` (name -> text), then filled to the last byte.

    A real full file system (ENOSPC), not a simulation: tests run as root, here and in CI.
    """
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)], check=True)
    try:
        for name, text in keep.items():
            (directory / name).write_text(text)
        with open(directory / "filler", "wb", buffering=0) as fh:
            for _ in range(2000):  # 64 KiB in 64-byte steps at most
                try:
                    fh.write(b"\0" * 64)
                except OSError:
                    break
        assert os.statvfs(directory).f_bavail == 0, "the tmpfs is not full"
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def test_disk_full_when_writing_reports_exits_3_and_keeps_old_files_whole(tmp_path: Path) -> None:
    """The report's file system is full: exit 3 with 'No space left on device', the console report
    still printed, the previous report at that path left whole, and no temporary file behind."""
    old_json, old_xml = '{"previous": "run"}\n', "<testsuites/>\n"
    with full_disk(tmp_path / "full", {"r.json": old_json, "r.xml": old_xml}) as full:
        proc = _wsload(
            str(SMOKE), "--report-dir", "", "--json", str(full / "r.json"), "--junit", str(full / "r.xml")
        )
        assert proc.returncode == 3, proc.stderr
        assert f"wsload: cannot write report {full / 'r.json'}: No space left on device" in proc.stderr
        assert f"wsload: cannot write report {full / 'r.xml'}: No space left on device" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stdout.splitlines()[-1].startswith("PASS echo smoke")
        assert (full / "r.json").read_text() == old_json
        assert (full / "r.xml").read_text() == old_xml
        assert sorted(p.name for p in full.iterdir()) == ["filler", "r.json", "r.xml"]


def test_disk_full_report_dir_exits_3_without_partial_files(tmp_path: Path) -> None:
    """The --report-dir is on a full file system: exit 3, and not one partial or temporary file."""
    with full_disk(tmp_path / "full", {}) as full:
        proc = _wsload(str(SMOKE), "--report-dir", str(full / "reports"), "--quiet")
        assert proc.returncode == 3, proc.stderr
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        leftovers = [p.name for p in full.rglob("*") if p.is_file() and p.name != "filler"]
        assert leftovers == []


FD_LIMIT = 48
CONNECTIONS = 60


def _few_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_fd_limit_open_gives_no_free_sockets_and_run_reports_it(tmp_path: Path) -> None:
    """Out of file descriptors mid-run: the open gives -1 'no more free sockets: Too many open files',
    the run fails (exit 1) with that error in its report, and the report is still written."""
    names = [f"c{i:02d}" for i in range(CONNECTIONS)]
    scenario = tmp_path / "many.yaml"
    scenario.write_text(
        "name: many connections\nconnections:\n"
        + "".join(f"  {n}: {{url: /echo, timeout: 2s}}\n" for n in names)
        + "steps:\n"
        + "".join(f"  - open: {n}\n" for n in names)
        + "".join(f"  - close: {n}\n" for n in names)
    )
    server = EmbeddedServer().run_in_thread()  # in this process: its sockets do not count against the limit
    try:
        proc = _wsload(
            str(scenario),
            "--target",
            server.url,
            "--report-dir",
            "",
            "--json",
            str(tmp_path / "r.json"),
            "--verbose",
            preexec_fn=_few_fds,
        )
    finally:
        server.stop_thread()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    opens = [s for s in doc["steps"] if s["kind"] == "open"]
    ok = [s for s in opens if s["ok"] == 1]
    failed = [s for s in opens if s["failures"] == 1]
    assert 5 <= len(ok) < CONNECTIONS and len(failed) == 1, [(s["name"], s["ok"]) for s in opens]
    error = failed[0]["errors"][0]
    assert error["rc"] == -1
    port = server.url.rsplit(":", 1)[1]
    assert error["message"].endswith(
        f"no more free sockets: Too many open files (errno 24) connecting to 127.0.0.1:{port}"
    ), error
    assert "no more free sockets: Too many open files" in proc.stdout
    assert os.path.getsize(tmp_path / "r.json") > 0


def test_faults_table_names_only_existing_tests() -> None:
    """Every test docs/faults.md cites exists, so the table cannot drift from the tests that prove it."""
    table = (ROOT / "docs" / "faults.md").read_text()
    cited = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)", table))
    assert len(cited) >= 25
    missing = [f"{f}::{name}" for f, name in sorted(cited) if f"def {name}(" not in (ROOT / f).read_text()]
    assert missing == []
