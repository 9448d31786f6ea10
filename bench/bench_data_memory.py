"""Per-user data memory (issue 16 §2): what 100,000 data rows cost one process, and what each of
20,000 users costs on top once it holds its row.

In a fresh process: RSS before and after loading a scenario whose ``data:`` set is a CSV of
``--rows`` rows (name, password, email: ~50 bytes a row), then after making ``--users`` virtual
users and giving each the row its first iteration would pick (``DataPicker.rows``, the engine's
own pick), after a ``gc.collect``. Prints the figures as text or ``--json``.

    python bench/bench_data_memory.py                   # 100,000 rows, 20,000 users
    python bench/bench_data_memory.py --rows 1000000 --users 50000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
from pathlib import Path


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


SCENARIO = """\
name: data memory
target: embedded
data:
  users: {file: users.csv, pick: unique, secret: [password]}
connections: {main: {url: /echo}}
steps:
  - open: main
  - write: {connection: main, text: "{{ users.name }} {{ users.email }}"}
"""


def measure(rows: int, users: int) -> dict[str, float]:
    from runner.engine.vu import RunContext, VirtualUser
    from runner.loader import load_scenario
    from runner.results.recorders import RunRecorder

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "users.csv"
        with csv.open("w") as f:
            f.write("name,password,email\n")
            for i in range(rows):
                f.write(f"user{i:07d},pw-{i * 7919 % 1000003:07d}-secret,user{i:07d}@example.org\n")
        (Path(tmp) / "s.yaml").write_text(SCENARIO)
        gc.collect()
        base = _rss_kib()
        scenario = load_scenario(Path(tmp) / "s.yaml")
        gc.collect()
        loaded = _rss_kib()
        ctx = RunContext(scenario, RunRecorder(0))
        assert ctx.data is not None
        gc.collect()
        before_users = _rss_kib()
        made = []
        for n in range(1, users + 1):
            vu = VirtualUser(ctx, None, n)  # type: ignore[arg-type]  # no client: nothing is sent
            picked, _ = ctx.data.rows(0, n, 0)
            vu.variables.update(picked)
            made.append(vu)
        gc.collect()
        after_users = _rss_kib()
        # the same users without rows: what a user costs anyway
        plain = [VirtualUser(ctx, None, n) for n in range(1, users + 1)]  # type: ignore[arg-type]
        gc.collect()
        after_plain = _rss_kib()
        assert len(made) == len(plain) == users
    per_user_with_row = (after_users - before_users) * 1024 / users
    per_user_plain = (after_plain - after_users) * 1024 / users
    return {
        "rows": rows,
        "users": users,
        "data_mib": round((loaded - base) / 1024, 1),
        "bytes_per_row": round((loaded - base) * 1024 / rows, 1),
        "bytes_per_user_with_row": round(per_user_with_row),
        "bytes_per_user_without_row": round(per_user_plain),
        "bytes_of_the_row_per_user": round(per_user_with_row - per_user_plain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (0 < args.rows <= 5_000_000 and 0 < args.users <= 200_000):
        parser.error("--rows up to 5,000,000 and --users up to 200,000")
    figures = measure(args.rows, args.users)
    figures["pid"] = os.getpid()
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{figures['rows']:,} rows: {figures['data_mib']} MiB ({figures['bytes_per_row']} B/row) "
        f"loaded once per process; {figures['users']:,} users: "
        f"{figures['bytes_per_user_with_row']} B/user holding their row, "
        f"{figures['bytes_per_user_without_row']} B/user without, "
        f"so the row costs {figures['bytes_of_the_row_per_user']} B/user"
    )


if __name__ == "__main__":
    main()
