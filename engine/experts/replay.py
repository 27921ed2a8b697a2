"""Replaying a recorded expert trace: how policies and the offline optima would have done.

A trace is the list of accesses (arrays of expert keys) in the order the manager saw
them. Hit rates count each key of an access once; `scored_from` leaves the first accesses
(say a prompt's) out of the score while they still warm the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.experts.cache import CachePolicy, ExpertCache


def _hit_rate(hits: int, total: int) -> float:
    return hits / total if total else 1.0


def replay_hit_rate(
    trace: Sequence[np.ndarray],
    n_keys: int,
    capacity: int,
    policy: CachePolicy,
    *,
    scored_from: int = 0,
    uses: Sequence[np.ndarray] | None = None,
    seed_uses: np.ndarray | None = None,
    layer_size: int | None = None,
    used_per_layer: int = 1,
) -> float:
    """`uses`: per access, the tokens using each key (as the manager passes them);
    `seed_uses`: the counts the cache started from (an earlier session's history);
    `layer_size`, `used_per_layer`: the model's layers, as the manager's cache knows them."""
    cache = ExpertCache(n_keys, capacity, policy, layer_size=layer_size, used_per_layer=used_per_layer)
    if seed_uses is not None:
        cache.seed(seed_uses)
    hits = total = 0
    for i, keys in enumerate(trace):
        access = cache.access(keys, uses[i] if uses is not None else None)
        if i >= scored_from:
            hits += len(access.hits)
            total += len(access.hits) + len(access.misses)
    return _hit_rate(hits, total)


def static_oracle_hit_rate(trace: Sequence[np.ndarray], n_keys: int, capacity: int, *, scored_from: int = 0) -> float:
    """Keep resident the `capacity` keys used most over the scored trace, never change them."""
    scored = [np.unique(k) for k in trace[scored_from:]]
    if not scored:
        return 1.0
    counts = np.bincount(np.concatenate(scored), minlength=n_keys)
    best = np.sort(counts)[::-1][:capacity]
    return _hit_rate(int(best.sum()), int(counts.sum()))


def belady_hit_rate(trace: Sequence[np.ndarray], n_keys: int, capacity: int, *, scored_from: int = 0) -> float:
    """Belady's offline optimum: evict the resident key used again farthest in the future."""
    accesses = [np.unique(k) for k in trace]
    never = len(accesses)
    next_use = _next_uses(accesses, n_keys)
    resident = np.zeros(n_keys, dtype=bool)
    upcoming = np.full(n_keys, never, dtype=np.int64)  # each resident key's next access
    hits = total = 0
    for i, keys in enumerate(accesses):
        present = resident[keys]
        misses = keys[~present]
        overflow = int(np.count_nonzero(resident)) + len(misses) - capacity
        if overflow > 0:
            candidates = np.flatnonzero(resident)
            candidates = candidates[~np.isin(candidates, keys)]
            farthest = candidates[np.argsort(-upcoming[candidates], kind="stable")[:overflow]]
            resident[farthest] = False
        resident[misses] = True
        upcoming[keys] = next_use[i]
        if i >= scored_from:
            hits += int(np.count_nonzero(present))
            total += len(keys)
    return _hit_rate(hits, total)


def _next_uses(accesses: list[np.ndarray], n_keys: int) -> list[np.ndarray]:
    """For access i, the index of the next access using each of its keys (len: never)."""
    following = np.full(n_keys, len(accesses), dtype=np.int64)
    result: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(accesses)
    for i in range(len(accesses) - 1, -1, -1):
        result[i] = following[accesses[i]].copy()
        following[accesses[i]] = i
    return result
