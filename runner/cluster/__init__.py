"""Load runs beyond one machine: shards of one plan, run by hand or on a Dask cluster.

- ``shard.run_shard``: shard K of N in this process (``wsload run FILE --shard K/N``); its report
  carries what ``runner.load.merge`` needs to combine the N reports exactly (``wsload merge``).
- ``dask_runner.run_on_cluster``: ``wsload run FILE --cluster tcp://HOST:8786``; one shard per
  Dask worker, progress streamed back, one merged result. Dask is optional (``wsload[cluster]``):
  nothing here imports it until a cluster run asks for it.
"""

from __future__ import annotations

__all__ = ["run_on_cluster", "run_shard"]


def __getattr__(name: str) -> object:
    # Lazy: ``import runner.cluster`` must work without Dask installed.
    if name == "run_on_cluster":
        from runner.cluster.dask_runner import run_on_cluster

        return run_on_cluster
    if name == "run_shard":
        from runner.cluster.shard import run_shard

        return run_shard
    raise AttributeError(name)
