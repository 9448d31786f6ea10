"""Reproducible random draws for virtual users, without a random generator per user.

A draw is a pure function of ``(seed, user, n)``: the run's seed, the user's number (global
across workers and shards) and how many draws that user made before. The same seed therefore
gives every user the same think times whatever the scheduling, the number of workers or the
machine; ``--seed`` replays a run's. A ``random.Random`` per user would do the same at 2,560
bytes each (``sys.getsizeof``, its Mersenne Twister state): 50 MB for 20,000 users against an
8 KiB budget per user. The hash is SplitMix64's finaliser (Steele, Lea and Flood, 2014), which
passes BigCrush as a counter-based generator. Measured 575 ns per draw (``python -m timeit``,
against 32 ns for ``Random.random``): nothing beside a sleep of a millisecond or more.
"""

from __future__ import annotations

__all__ = ["unit_draw"]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def unit_draw(seed: int, user: int, n: int) -> float:
    """A uniform number in [0, 1): the ``n``-th draw of ``user`` in a run seeded ``seed``."""
    z = (seed * 0xD1342543DE82EF95 + user * _GOLDEN + (n + 1) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return (z >> 11) * (1.0 / (1 << 53))
