"""The expert cache's policies and the offline replays the benchmark compares them with."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import EngineError
from engine.experts.cache import CachePolicy, ExpertCache
from engine.experts.replay import belady_hit_rate, replay_hit_rate, static_oracle_hit_rate


def keys(*k: int) -> np.ndarray:
    return np.array(k, dtype=np.int64)


@pytest.mark.parametrize("policy", list(CachePolicy))
def test_the_cache_never_holds_more_than_its_capacity_and_never_evicts_what_is_in_use(policy):
    rng = np.random.default_rng(0)
    cache = ExpertCache(64, 10, policy)
    for _ in range(500):
        wanted = rng.choice(64, size=4, replace=False)
        access = cache.access(wanted)
        assert cache.size <= 10
        assert cache.resident[wanted].all()
        assert not np.isin(access.evicted, wanted).any()
        assert sorted(np.concatenate([access.hits, access.misses])) == sorted(wanted)


def _victim(policy: CachePolicy, uses: list[int], capacity: int = 3) -> list[int]:
    cache = ExpertCache(8, capacity, policy)
    for k in uses[:-1]:
        cache.access(keys(k))
    return cache.access(keys(uses[-1])).evicted.tolist()


def test_each_policy_evicts_its_own_kind_of_victim():
    often_early = [0, 0, 0, 1, 2, 1, 3]  # 0 used most but longest ago
    assert _victim(CachePolicy.LFU, often_early) == [2]  # the least used
    assert _victim(CachePolicy.LRU, often_early) == [0]
    reused_first = [0, 1, 2, 0, 3]  # 0 loaded first, then used again
    assert _victim(CachePolicy.LRU, reused_first) == [1]
    assert _victim(CachePolicy.FIFO, reused_first) == [0]  # loaded longest ago, however used since
    assert _victim(CachePolicy.LFU, reused_first) == [1]  # 1 and 2 tie on uses: the less recent goes


def test_knowing_the_layers_lfu_lets_go_of_the_expert_whose_layer_runs_last_again():
    # Four layers of two experts (key 2k + e is layer k's expert e), each layer used one once.
    def victim(layers: bool) -> list[int]:
        cache = ExpertCache(8, 4, CachePolicy.LFU, layer_size=2 if layers else None)
        for key in (0, 2, 4, 6):  # a token through layers 0-3: equally popular experts
            cache.access(keys(key))
        return cache.access(keys(0, 1)).evicted.tolist()  # the next token's layer 0 needs room

    # Without layers: the least recently used of the equals, layer 1's, needed again next. With
    # them: layer 3's, which just ran and is needed last.
    assert victim(layers=False) == [2]
    assert victim(layers=True) == [6]


def test_knowing_the_layers_lfu_weighs_each_expert_against_its_own_layer():
    # A prompt's batch counts many tokens in most layers but one in the last: per layer, the
    # last layer's expert used by every token is the one to keep.
    cache = ExpertCache(8, 3, CachePolicy.LFU, layer_size=4)
    cache.access(keys(0, 1), uses=np.array([60, 40]))  # layer 0: a 100-token prompt
    cache.access(keys(4), uses=np.array([1]))  # layer 1: the prompt's last token only
    for _ in range(3):  # decode: layer 0 uses 0 or 1, layer 1 always 4
        cache.access(keys(0))
        cache.access(keys(4))
    cache.access(keys(2))  # layer 0 needs a third expert
    assert cache.resident[4] and not cache.resident[1]
    raw = ExpertCache(8, 3, CachePolicy.LFU)
    raw.access(keys(0, 1), uses=np.array([60, 40]))
    raw.access(keys(4), uses=np.array([1]))
    for _ in range(3):
        raw.access(keys(0))
        raw.access(keys(4))
    raw.access(keys(2))
    assert not raw.resident[4]  # raw counts: 4 scores 4 against 1's 40


def test_lfu_ages_old_popularity_away():
    cache = ExpertCache(8, 2, CachePolicy.LFU, half_life=2)
    for _ in range(5):
        cache.access(keys(0))
    for _ in range(20):  # a change of topic: 1 and 2 are the hot ones now
        cache.access(keys(1))
        cache.access(keys(2))
    assert cache.resident[[1, 2]].all() and not cache.resident[0]


def test_a_seeded_cache_keeps_what_earlier_sessions_used_most():
    def victim_after(seed: np.ndarray | None) -> list[int]:
        cache = ExpertCache(4, 2, CachePolicy.LFU)
        if seed is not None:
            cache.seed(seed)
        cache.access(keys(2))
        cache.access(keys(0))
        return cache.access(keys(1)).evicted.tolist()

    assert victim_after(None) == [2]  # equal counts: the least recently used goes
    assert victim_after(np.array([0.0, 0.0, 10.0, 0.0])) == [0]  # 2 was popular before this session
    with pytest.raises(EngineError, match="expected 4"):
        ExpertCache(4, 2).seed(np.zeros(3))


def test_a_layer_needing_more_experts_than_the_cache_holds_is_an_error():
    with pytest.raises(EngineError, match="holds 2"):
        ExpertCache(8, 2).access(keys(1, 2, 3))


def test_shrinking_the_cache_evicts_the_least_valuable():
    cache = ExpertCache(8, 3, CachePolicy.LFU)
    for k in (0, 0, 0, 1, 1, 2):
        cache.access(keys(k))
    assert cache.resize(1).tolist() == [2, 1]
    assert cache.resident.tolist() == [True] + [False] * 7


def test_the_static_oracle_counts_the_top_keys_of_the_scored_part():
    trace = [keys(0, 1), keys(0, 2), keys(0, 1), keys(3)]
    assert static_oracle_hit_rate(trace, 4, 2) == pytest.approx(5 / 7)  # keep 0 (3 uses) and 1 (2)
    assert static_oracle_hit_rate(trace, 4, 1, scored_from=3) == 1.0


def test_belady_bounds_every_online_policy_and_matches_a_hand_computed_trace():
    # capacity 2, a b c a b: a, b, c miss; c evicts b (next used at 4, a at 3); a hits; b misses.
    trace = [keys(0), keys(1), keys(2), keys(0), keys(1)]
    assert belady_hit_rate(trace, 3, 2) == pytest.approx(1 / 5)
    rng = np.random.default_rng(1)
    popularity = rng.dirichlet(np.full(40, 0.3))
    trace = [rng.choice(40, size=3, replace=False, p=popularity) for _ in range(400)]
    best = belady_hit_rate(trace, 40, 12)
    for policy in CachePolicy:
        assert replay_hit_rate(trace, 40, 12, policy) <= best + 1e-12
    assert replay_hit_rate(trace, 40, 12, CachePolicy.LFU) > replay_hit_rate(trace, 40, 12, CachePolicy.FIFO)


def test_admitting_a_read_ahead_never_evicts_pinned_keys_and_skips_what_does_not_fit():
    cache = ExpertCache(n_keys=20, capacity=4)
    cache.access(np.array([0, 1, 2, 3]))
    admitted = cache.admit(np.array([10, 11]), pinned=np.array([0, 1]))
    assert set(admitted.misses) == {10, 11} and set(admitted.evicted) == {2, 3}
    assert cache.resident[[0, 1, 10, 11]].all() and cache.size == 4
    # Everything resident is pinned now: nothing can be brought in for a guess.
    admitted = cache.admit(np.array([12]), pinned=np.array([0, 1, 10, 11]))
    assert len(admitted.misses) == 0 and len(admitted.evicted) == 0 and not cache.resident[12]
    # Room for one of two guesses: the first named (the best ranked) goes in.
    admitted = cache.admit(np.array([13, 12]), pinned=np.array([0, 1, 10]))
    assert list(admitted.misses) == [13] and list(admitted.evicted) == [11]


def test_the_running_layer_comes_before_pinned_read_aheads_when_space_runs_out():
    cache = ExpertCache(n_keys=20, capacity=4)
    cache.access(np.array([0, 1, 2, 3]))
    access = cache.access(np.array([5, 6]), pinned=np.array([0, 1, 2, 3]))
    assert set(access.misses) == {5, 6} and len(access.evicted) == 2 and cache.size == 4
