"""Which experts stay in RAM: a fixed number of slots and a replacement policy.

Book-keeping only (no I/O): the manager turns its answers into reads and evictions, and
the benchmark replays recorded traces through the same class. An access is one layer's
experts for one evaluation (one token, or the union over a prompt batch); those experts
are pinned while the access is served, since the layer is about to use them all.

Policies:
- LFU (the default): frequency with exponential ageing (each access weighs 2^(1/half_life)
  more than the one before), ties to the least recently used. SmallThinker's experts are
  unevenly popular and a token's experts barely depend on the previous token's, so how
  often an expert is used predicts its next use better than how recently; ageing lets
  the hot set follow a change of topic. A cold expert enters with the lowest score and is
  the next to go, so one-off experts pass through one slot without pushing hot ones out.
  Given the model's layers (`layer_size`: keys per layer, in layer order), the victim is
  the key whose next use is expected latest: (1 - p) / p tokens for a key used with
  probability p a token (its score over its layer's, times the experts a layer uses) plus
  `LAYER_DISTANCE_WEIGHT` times the part of a token until its layer runs again (a layer
  that just ran waits longest). Per layer, not raw, scores: a prompt's batch counts every
  token in every layer but the last (llama.cpp runs it for the last token only), which made
  the last layer's experts look rare. Replays of two 512-token traces of the synthetic 4B
  at 1 GiB (the manager's accesses, history-seeded): 0.9649/0.9636 of the static oracle
  with raw scores, 0.9675/0.9661 per layer, and with the distance weighted 1, 4 and 8:
  0.9688/0.9667, 0.9695/0.9673, 0.9683/0.9665. At 2 GiB (384 tokens) 0.9817 -> 0.9823.
- LRU: recency only (PowerInfer's engine keeps one LRU of experts).
- FIFO: the expert loaded longest ago goes first: the simple evictor the benchmark
  compares against.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from engine.errors import EngineError

# How much a layer's distance (the part of a token until it runs again) adds to an expert's
# expected wait for its next use, in tokens; see the module's docstring.
LAYER_DISTANCE_WEIGHT = 4.0


class CachePolicy(StrEnum):
    LFU = "lfu"
    LRU = "lru"
    FIFO = "fifo"


@dataclass(frozen=True)
class Access:
    hits: np.ndarray  # keys already resident
    misses: np.ndarray  # keys to read
    evicted: np.ndarray  # keys to drop, to make room for the misses


class ExpertCache:
    def __init__(
        self,
        n_keys: int,
        capacity: int,
        policy: CachePolicy = CachePolicy.LFU,
        *,
        half_life: float = 8192.0,
        layer_size: int | None = None,
        used_per_layer: int = 1,
    ) -> None:
        """`layer_size`: keys per layer (keys numbered layer by layer), `used_per_layer`: keys an
        access to one layer uses per token; with them LFU weighs when a key's layer runs next."""
        if capacity < 1:
            raise EngineError("the expert cache needs room for at least one expert")
        self.n_keys = n_keys
        self.capacity = min(capacity, n_keys)
        self.policy = CachePolicy(policy)
        self.resident = np.zeros(n_keys, dtype=bool)
        self._score = np.zeros(n_keys, dtype=np.float64)
        self._last_used = np.zeros(n_keys, dtype=np.int64)
        self._loaded_at = np.zeros(n_keys, dtype=np.int64)
        self._growth = 2.0 ** (1.0 / half_life)
        self._weight = 1.0
        self.tick = 0
        self._layer_size = layer_size if layer_size and n_keys % layer_size == 0 else None
        self._used_per_layer = used_per_layer
        self._layer = 0  # the layer of the latest access
        n_layer = n_keys // self._layer_size if self._layer_size else 1
        self._key_layer = np.arange(n_keys) // (self._layer_size or n_keys)
        self._layer_score = np.zeros(n_layer)  # the sum of each layer's scores
        # [current layer, layer]: the part of a token until `layer` runs again (the current
        # layer's other experts: a whole token)
        steps = (np.arange(n_layer)[None, :] - np.arange(n_layer)[:, None] - 1) % n_layer + 1
        self._distance = LAYER_DISTANCE_WEIGHT * steps / n_layer

    @property
    def size(self) -> int:
        return int(np.count_nonzero(self.resident))

    def access(self, keys: np.ndarray, uses: np.ndarray | None = None, *, pinned: np.ndarray | None = None) -> Access:
        """Serve one access: which keys hit, which must be read, which to evict for them.

        `uses`: how many tokens of the access use each key (a prompt batch counts each
        token's choice, so LFU learns the prompt's popular experts); 1 each by default.
        `pinned`: other keys that must not be evicted now (reads ahead still to be used), as
        keys or as a bool mask over every key.
        """
        if uses is None:
            keys = np.unique(np.asarray(keys, dtype=np.int64))
            uses = 1.0
        elif len(set(keys.tolist())) != len(keys):
            raise EngineError("an access with use counts must name each expert once")
        if len(keys) > self.capacity:
            raise EngineError(f"one layer needs {len(keys)} experts but the cache holds {self.capacity}")
        self.tick += 1
        if self._layer_size and len(keys):
            self._layer = int(keys[0]) // self._layer_size
        protected = self._mask(keys, pinned)
        need = int(np.count_nonzero(~self.resident[keys])) - (self.capacity - self.size)
        if need > 0 and need > self.size - int(np.count_nonzero(self.resident & protected)):
            protected = self._mask(keys, None)  # the layer about to run comes before any read ahead
        access = self._bring_in(keys, protected)
        self._last_used[keys] = self.tick
        self._count(keys, uses)
        return access

    def admit(self, keys: np.ndarray, pinned: np.ndarray) -> Access:
        """Make `keys` (distinct, most wanted first) resident ahead of their use (a speculative
        read), counting no use.

        Only what is neither in `keys` nor `pinned` (keys or a bool mask) can be evicted for
        them, and only while the cache has room beyond the pinned keys: what cannot fit (the
        last of `keys`) is left out of `misses`.
        """
        keys = np.asarray(keys, dtype=np.int64)
        protected = self._mask(keys, pinned)
        present = self.resident[keys]
        room = self.capacity - int(np.count_nonzero(self.resident & protected))
        absent = keys[~present]
        return self._bring_in(np.concatenate((keys[present], absent[: max(0, room)])), protected)

    def drop(self, keys: np.ndarray) -> None:
        """Forget that `keys` are resident (their reads were cut short), keeping their counts."""
        self.resident[keys] = False

    def _mask(self, keys: np.ndarray, pinned: np.ndarray | None) -> np.ndarray:
        """A bool mask over every key: `keys` and `pinned` set (bool masks are cheaper than
        sorted-set operations at the few keys per access of a decode)."""
        if pinned is not None and pinned.dtype == bool:
            mask = pinned.copy()
        else:
            mask = np.zeros(self.n_keys, dtype=bool)
            if pinned is not None:
                mask[pinned] = True
        mask[keys] = True
        return mask

    def _bring_in(self, keys: np.ndarray, protected: np.ndarray) -> Access:
        present = self.resident[keys]
        hits, misses = keys[present], keys[~present]
        evicted = self._victims(len(misses) - (self.capacity - self.size), protected)
        self.resident[evicted] = False
        self.resident[misses] = True
        self._loaded_at[misses] = self.tick
        return Access(hits, misses, evicted)

    def seed(self, uses: np.ndarray) -> None:
        """Start LFU's counts from earlier sessions' uses (per key), as if they had been seen."""
        if uses.shape != (self.n_keys,):
            raise EngineError(f"expected {self.n_keys} use counts, got {uses.shape}")
        self._score[:] = uses * self._weight
        self._layer_score[:] = np.bincount(self._key_layer, weights=self._score, minlength=len(self._layer_score))

    def resize(self, capacity: int) -> np.ndarray:
        """Change the number of slots; returns the keys to evict when it shrinks."""
        self.capacity = max(1, min(capacity, self.n_keys))
        evicted = self._victims(self.size - self.capacity, None)
        self.resident[evicted] = False
        return evicted

    def _count(self, keys: np.ndarray, uses: np.ndarray) -> None:
        self._weight *= self._growth
        if self._weight > 1e200:  # rescale before overflow; the order of scores is kept
            self._score /= self._weight
            self._layer_score /= self._weight
            self._weight = 1.0
        self._score[keys] += self._weight * uses
        self._layer_score[self._layer] += self._weight * (np.sum(uses) if np.ndim(uses) else uses * len(keys))

    def _victims(self, n: int, protected: np.ndarray | None) -> np.ndarray:
        """The `n` keys to evict, none of them set in the bool mask `protected`."""
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        keys = np.flatnonzero(self.resident if protected is None else self.resident & ~protected)
        if self.policy is CachePolicy.LFU and self._layer_size:
            # The longest expected wait, 1 / p (- 1) + the weighted distance, goes first; as few
            # numpy calls as will do (this runs on llama.cpp's thread, for most misses).
            layers = self._key_layer[keys]
            share = self._used_per_layer / np.maximum(self._layer_score, 1e-300)
            wait = 1.0 / (self._score[keys] * share[layers] + 1e-12) + self._distance[self._layer][layers]
            if n < len(keys):
                chosen = np.argpartition(-wait, n - 1)[:n]
                return keys[chosen[np.argsort(-wait[chosen], kind="stable")]]
            return keys[np.argsort(-wait, kind="stable")]
        if self.policy is CachePolicy.LFU:
            scores = self._score[keys]
            if n < len(keys):  # only keys scoring no more than the n-th lowest can go: sort those
                low = scores <= np.partition(scores, n - 1)[n - 1]
                keys, scores = keys[low], scores[low]
            order = np.lexsort((self._last_used[keys], scores))
        elif self.policy is CachePolicy.LRU:
            order = np.argsort(self._last_used[keys], kind="stable")
        else:
            order = np.argsort(self._loaded_at[keys], kind="stable")
        return keys[order[:n]]
