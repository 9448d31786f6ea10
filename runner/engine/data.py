"""Per-user data at run time: the row of each data set an iteration sees (``{{ users.name }}``).

The sets are loaded once per process (``Scenario.data``) and shared by all its users; a pick
makes one small dict of the row's values, which the iteration's templates read. How a set picks:

- ``sequential``: this process's k-th pick takes row ``k * shards + shard`` (wrapping), so the
  workers and shards of one run take turns along the file instead of all starting at its top;
- ``unique``: the same rows without wrapping: each row is handed out once across all workers and
  shards, with no coordination between them; when this process's share runs out the set is
  ``exhausted``: ``stop`` ends the run as a planned end (saying so), ``fail`` fails each
  iteration that finds no row;
- ``random``: a row drawn per pick from the run's seed and the user's draws
  (``runner.scenario.draws``), reproducible with ``--seed``.

Values of the columns a set lists as ``secret`` are registered with the run's secrets when
picked, for good (``SecretRegistry.pin``: an iteration may echo its row's value after 10,000
newer picks), so every output masks them; memory is bounded by the rows a run picks.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.errors import WsloadError
from runner.scenario.draws import unit_draw
from runner.scenario.model import DataSet
from runner.scenario.secrets import SecretRegistry

__all__ = ["DataExhausted", "DataPicker"]


class DataExhausted(WsloadError):
    """Every unique row of a set this process may hand out has been handed out."""

    def __init__(self, dataset: DataSet, handed: int) -> None:
        super().__init__(dataset.name, handed)
        self.dataset = dataset
        self.handed = handed

    def __str__(self) -> str:
        d = self.dataset
        return (
            f"data '{d.name}' ran out of unique rows: {d.file} has {len(d.rows):,}, "
            f"{self.handed:,} of them handed out by this process"
        )


class DataPicker:
    """The picks of one process (its ``shard`` of ``shards``) from the scenario's data sets."""

    __slots__ = ("_counters", "_secrets", "sets", "shard", "shards")

    def __init__(self, sets: Mapping[str, DataSet], secrets: SecretRegistry) -> None:
        self.sets = tuple(sets.values())
        self._secrets = secrets
        self._counters = dict.fromkeys(sets, 0)
        self.shard = 0
        self.shards = 1

    def rows(self, seed: int, user: int, draws: int) -> tuple[dict[str, dict[str, object]], int]:
        """This iteration's row of each set (name -> {column: value}) and how many random draws
        it took; ``DataExhausted`` for a unique set with ``exhausted: stop`` or ``fail``."""
        out: dict[str, dict[str, object]] = {}
        used = 0
        for d in self.sets:
            n = len(d.rows)
            if d.pick == "random":
                index = min(int(unit_draw(seed, user, draws + used) * n), n - 1)
                used += 1
            else:
                k = self._counters[d.name]
                index = k * self.shards + self.shard
                if d.pick == "unique" and index >= n:
                    raise DataExhausted(d, k)
                self._counters[d.name] = k + 1
                index %= n
            row = dict(zip(d.columns, d.rows[index], strict=True))
            for column in d.secret:
                self._secrets.pin(row[column])
            out[d.name] = row
        return out, used
