"""The ``wsload run`` options of runs beyond one machine, and the call ``run`` makes for them.

``runner.commands.run`` only adds these options and hands a load run to ``run_beyond`` when
``--shard`` or ``--cluster`` is given; everything else lives here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping

from runner.errors import UsageError
from runner.load.monitor import Progress
from runner.load.settings import LoadOverrides
from runner.results.result import RunResult
from runner.scenario.model import Scenario

__all__ = ["add_cluster_options", "check_cluster_options", "run_beyond", "wants_beyond"]


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("beyond one machine (shards merged with 'wsload merge', or Dask)")
    group.add_argument(
        "--shard",
        metavar="K/N",
        help="run shard K (1-based) of N of the load plan and mark the JSON report as a shard; "
        "'wsload merge' combines the N reports exactly",
    )
    group.add_argument(
        "--start-at",
        metavar="ISO8601",
        default=os.environ.get("WSLOAD_START_AT"),
        help="wall-clock start of the plan shared by every shard, e.g. 2026-11-25T21:30:00Z "
        "(UTC unless an offset is given; default: now; env WSLOAD_START_AT)",
    )
    group.add_argument(
        "--cluster",
        metavar="ADDRESS",
        default=os.environ.get("WSLOAD_CLUSTER"),
        help="run the load across the workers of a Dask cluster, e.g. tcp://scheduler:8786: one "
        "shard per Dask worker (or --workers shards); needs pip install 'wsload[cluster]' "
        "(env WSLOAD_CLUSTER)",
    )


def wants_beyond(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "shard", None) or getattr(args, "cluster", None))


def check_cluster_options(args: argparse.Namespace) -> None:
    """Usage errors of these options, before any file is read: ``--start-at`` is the shared start
    of shards and means nothing to a run of one machine (it used to be ignored in silence)."""
    start_at = getattr(args, "start_at", None)
    if not start_at:
        return
    if not (getattr(args, "shard", None) or getattr(args, "cluster", None)):
        given = "--start-at" if start_at != os.environ.get("WSLOAD_START_AT") else "WSLOAD_START_AT"
        raise UsageError(
            f"{given} {start_at!r} needs --shard K/N (or --cluster): it is the start time shared by "
            "the shards of one load run; without them the run starts at once"
        )
    from runner.cluster.shard import parse_start_at

    parse_start_at(start_at)  # a bad time is a usage error now, not after the files are loaded


async def run_beyond(
    args: argparse.Namespace,
    scenario: Scenario,
    target: str | None,
    overrides: LoadOverrides,
    variables: Mapping[str, str],
    progress: Progress | None,
) -> RunResult:
    """A ``--shard`` run in this process, or a ``--cluster`` run coordinated from here."""
    from runner.cluster.shard import parse_shard_arg, parse_start_at, run_shard

    start = parse_start_at(args.start_at) if args.start_at else None
    if args.cluster:
        if args.shard:
            raise UsageError("--shard and --cluster do not go together: the cluster run makes its own shards")
        from runner.cluster.dask_runner import StopFlag, run_on_cluster
        from runner.runtime import on_stop_signals

        flag = StopFlag()
        with on_stop_signals(lambda signum: flag.set(f"interrupted by signal {signum}")):
            return await asyncio.to_thread(
                run_on_cluster,
                scenario.file,
                dict(variables),
                target,
                overrides,
                args.cluster,
                shards=args.workers,
                start_unix_ns=start,
                progress=progress,
                stop=flag,
            )
    index, count = parse_shard_arg(args.shard)
    if args.workers not in (None, 1):
        raise UsageError("--shard runs in one process: for more cores run more shards (N = machines x cores)")
    return await run_shard(
        scenario,
        index=index,
        count=count,
        target=target,
        overrides=overrides,
        start_unix_ns=start,
        progress=progress,
    )
