"""The ``wsload run`` options of runs beyond one machine: ``--shard K/N``, ``--start-at`` and
``--cluster``, their usage errors, and what they mean for a ``runner.run.RunRequest``."""

from __future__ import annotations

import argparse
import os

from runner.cluster.shard import parse_shard_arg, parse_start_at
from runner.errors import UsageError
from runner.run import ShardSpec

__all__ = ["add_cluster_options", "check_cluster_options", "shard_of", "start_of"]


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


def check_cluster_options(args: argparse.Namespace) -> None:
    """Usage errors of these options, before any file is read: ``--start-at`` is the shared start
    of shards and means nothing to a run of one machine (it used to be ignored in silence)."""
    if getattr(args, "check", False):
        return  # --check runs once, here: the options of a sharded load run do not apply
    shard, cluster = getattr(args, "shard", None), getattr(args, "cluster", None)
    if shard and cluster:
        raise UsageError("--shard and --cluster do not go together: the cluster run makes its own shards")
    if shard:
        parse_shard_arg(shard)
        if getattr(args, "workers", None) not in (None, 1):
            raise UsageError(
                "--shard runs in one process: for more cores run more shards (N = machines x cores)"
            )
    start_at = getattr(args, "start_at", None)
    if not start_at:
        return
    if not (getattr(args, "shard", None) or getattr(args, "cluster", None)):
        given = "--start-at" if start_at != os.environ.get("WSLOAD_START_AT") else "WSLOAD_START_AT"
        raise UsageError(
            f"{given} {start_at!r} needs --shard K/N (or --cluster): it is the start time shared by "
            "the shards of one load run; without them the run starts at once"
        )
    parse_start_at(start_at)  # a bad time is a usage error now, not after the files are loaded


def shard_of(args: argparse.Namespace) -> ShardSpec | None:
    """``--shard K/N`` as a shard spec (None without it, or with ``--check``)."""
    if getattr(args, "check", False) or not getattr(args, "shard", None):
        return None
    index, count = parse_shard_arg(args.shard)
    return ShardSpec(index, count)


def start_of(args: argparse.Namespace) -> int | None:
    """``--start-at`` in Unix nanoseconds, or None."""
    start_at = getattr(args, "start_at", None)
    return parse_start_at(start_at) if start_at else None
