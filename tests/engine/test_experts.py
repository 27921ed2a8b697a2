"""The expert-prefetch manager on real llama.cpp: predictions, the budget, identical answers."""

from __future__ import annotations

import ctypes
import dataclasses
import threading
import time

import numpy as np
import pytest

from engine.config import EngineConfig, MemoryMode, SamplingParams
from engine.engine import Engine
from engine.experts import direct_io, guess_choice, slots
from engine.experts import io as expert_io
from engine.experts import manager as experts_manager
from engine.experts.direct_io import DirectExpertIO, direct_reads_work
from engine.experts.history import history_file, load_history, save_history
from engine.experts.io import ReadMethod
from engine.experts.manager import BudgetTooSmallError, fixed_bytes, minimum_budget
from engine.experts.map import EXPERT_TENSORS, expert_map
from engine.experts.page_control import residency
from engine.experts.router_hook import RouterHook
from engine.model_info import inspect_model

GREEDY = SamplingParams(temperature=0, max_tokens=24, seed=1)
QUESTION = [{"role": "user", "content": "Summarise the plot of a long novel about the sea, please."}]


class RoutingRecorder:
    """A RouteListener that keeps what the hook predicted and what llama.cpp then chose."""

    def __init__(self, n_expert: int) -> None:
        self.n_expert = n_expert
        self.predicted: list[tuple[int, np.ndarray]] = []
        self.selected: list[tuple[int, np.ndarray]] = []

    lookahead = 0

    def experts_predicted(self, layer, experts, layer_input, guesses):
        self.predicted.append((layer, experts.copy()))

    def experts_selected(self, layer, experts, *, matrix_calls=False):
        chosen = np.zeros((experts.shape[0], self.n_expert), dtype=bool)
        np.put_along_axis(chosen, experts, True, axis=1)
        self.selected.append((layer, chosen))


class AskRecordingHook(RouterHook):
    """The router hook, noting the name of every node its Python callback is asked about."""

    def __init__(self, *args, **kwargs) -> None:
        self.asked: set[bytes] = set()
        super().__init__(*args, **kwargs)

    def _on_node(self, tensor, ask, user_data):
        self.asked.add(self._lib.ggml_get_name(tensor))
        return super()._on_node(tensor, ask, user_data)


@pytest.mark.parametrize("filtered", [True, False], ids=["filtered in C", "every node in Python"])
@pytest.mark.parametrize("model", ["tiny_model_path", "small_moe_model_path"])
def test_the_router_hook_names_the_experts_llama_cpp_then_selects(model, filtered, request):
    path = request.getfixturevalue(model)
    info = inspect_model(path)
    recorder = RoutingRecorder(info.n_expert)
    hook = AskRecordingHook(expert_map(info), recorder, filtered=filtered)
    config = EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED)
    with Engine(path, config, cb_eval=hook.callback, cb_eval_user_data=hook.callback_data) as engine:
        result = engine.chat(QUESTION, GREEDY)
        prompt_tokens = result.stats.prefill_tokens
    assert hook.failures == 0
    # `make` builds the C filter: only the nodes the hook wants reach Python through it.
    assert (hook.filter is not None) == filtered
    wanted = {*hook._nodes, *hook._matrix_nodes}
    assert hook.asked <= wanted if filtered else not hook.asked <= wanted
    # One prediction per layer per evaluation: the prompt's batch, then every sampled token
    # but the last (it is never evaluated).
    evaluations = 1 + result.stats.tokens_out - (result.finish_reason == "length")
    assert len(recorder.predicted) == len(recorder.selected) == evaluations * info.n_layer
    rows = 0
    for (layer, predicted), (selected_layer, selected) in zip(recorder.predicted, recorder.selected, strict=True):
        assert layer == selected_layer
        assert predicted.shape == selected.shape
        assert (predicted.sum(axis=1) == info.n_expert_used).all(), "a tie made the prediction a superset"
        np.testing.assert_array_equal(predicted, selected, err_msg=f"layer {layer}")
        rows += len(predicted)
    # The prompt's rows in every layer but the last (llama.cpp keeps only the last token there).
    assert rows >= prompt_tokens * (info.n_layer - 1)


def test_the_expert_map_cuts_each_expert_tensor_into_equal_contiguous_slices(small_moe_model_path):
    info = inspect_model(small_moe_model_path)
    experts = expert_map(info)
    for layer in range(info.n_layer):
        for m, name in enumerate(EXPERT_TENSORS):
            tensor = info.tensors[f"blk.{layer}.{name}.weight"]
            slices = [experts.ranges(layer, e)[m] for e in range(info.n_expert)]
            assert slices[0][0] == tensor.offset
            assert all(a[0] + a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
            assert slices[-1][0] + slices[-1][1] == tensor.offset + tensor.nbytes
    assert experts.all_experts_bytes + experts.non_expert_bytes == experts.model_bytes
    assert experts.routers[0].shape == (info.n_expert, info.n_embd)


@pytest.fixture
def slot_reads(monkeypatch):
    """DIRECT reads into slots mapped in place (where positions cannot be used), not to positions."""
    monkeypatch.setattr(experts_manager, "POSITIONS", False)


def _budget_config(path, fraction: float, **kwargs) -> tuple[EngineConfig, int]:
    info = inspect_model(path)
    experts = expert_map(info)
    budget = fixed_bytes(info) + int(fraction * experts.all_experts_bytes)
    assert budget < info.file_size
    config = EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED, expert_budget_bytes=budget, **kwargs)
    return config, budget


READ_SET_UPS = [
    (0, ReadMethod.PREAD),
    (2, ReadMethod.PREAD),
    (2, ReadMethod.WILLNEED),
    (3, ReadMethod.WILLNEED),
    (0, ReadMethod.DIRECT),
    (1, ReadMethod.DIRECT),
    (3, ReadMethod.DIRECT),
]


@pytest.mark.parametrize(("lookahead", "method"), READ_SET_UPS)
def test_resident_model_bytes_stay_within_the_budget_through_a_generation(small_moe_model_path, lookahead, method):
    config, budget = _budget_config(small_moe_model_path, 0.4, expert_lookahead=lookahead, expert_read_method=method)
    tolerance = 0.05  # the closing note of issue 9 states it; the benchmark measures it too
    with Engine(small_moe_model_path, config) as engine:
        assert engine.experts is not None
        resident = [engine.memory_report().model_resident_bytes]
        final = None
        for chunk in engine.stream_chat(QUESTION, SamplingParams(temperature=0, max_tokens=48, seed=1)):
            resident.append(engine.memory_report().model_resident_bytes)
            final = chunk
        stats = engine.expert_stats()
    assert final.stats.tokens_out > 8
    assert max(resident) <= budget * (1 + tolerance), f"peak {max(resident):,} over budget {budget:,}"
    assert stats.misses > stats.capacity_experts  # the model did not fit: experts were evicted and re-read
    assert 0 < stats.hit_rate < 1
    assert stats.prediction_mismatches == 0 and stats.predictions_checked > 0
    assert stats.bytes_read > 0 and stats.on_time + stats.late > 0
    assert stats.usage.sum() == stats.predictions_checked * 4  # four experts per token and layer
    assert stats.lookahead == lookahead
    assert (stats.speculative_reads > 0) == (lookahead > 0) and stats.exact_reads > 0
    if lookahead:
        assert 0 < stats.misses_read_ahead <= stats.misses
        assert 0 <= stats.wasted_read_fraction < 1
        assert stats.wasted_bytes <= stats.bytes_read  # counted as read, not as guessed


def test_a_route_names_the_layers_experts_and_ranks_its_guesses_of_the_next_ones(small_moe_model_path):
    experts = expert_map(inspect_model(small_moe_model_path))
    assert experts.n_guessed == 2  # the best half of the 4 used per token is read whole
    rng = np.random.default_rng(7)
    for layer in range(experts.n_layer - 2):
        row = rng.standard_normal(experts.all_routers.shape[1]).astype(np.float32)
        exact, *guesses = experts.route(layer, row, 3)
        assert exact == np.flatnonzero(experts.select(layer, row[None])[0]).tolist()
        assert len(guesses) == 2
        for ahead, guess in enumerate(guesses, start=1):
            logits = experts.routers[layer + ahead] @ row
            assert len(guess) == 4
            assert sorted(guess[:2]) == sorted(np.argsort(-logits)[:2].tolist())  # best first
            assert sorted(guess) == sorted(np.argsort(-logits)[:4].tolist())


def test_a_guess_below_the_best_half_reads_its_gate_and_the_rest_once_confirmed(small_moe_model_path, monkeypatch):
    reference = _reference_answer(small_moe_model_path)
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_lookahead=1, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        io = engine.experts._io
        gate_only, confirmed = [], []
        read = io.read

        def recording(keys, stamp=0, *, speculative=False, matrices=expert_io.ALL_MATRICES):
            if matrices == (0,):
                gate_only.extend(keys.tolist())
            elif not speculative:
                confirmed.extend(k for k in keys.tolist() if k in gate_only and not io._placed[k])
            read(keys, stamp, speculative=speculative, matrices=matrices)

        monkeypatch.setattr(io, "read", recording)
        assert engine.chat(QUESTION, GREEDY).text == reference
        stats = engine.expert_stats()
    assert gate_only and confirmed  # some gate-only guesses were right, and their up and down read then
    assert stats.unpredicted_reads == 0  # ... when the router confirmed them, not when llama.cpp chose them


def test_experts_within_a_large_folio_of_their_tensors_ends_are_evicted_with_pageout(small_moe_model_path, monkeypatch):
    monkeypatch.setattr(experts_manager, "LARGEST_FOLIO", 100_000)  # the test model's matrices: 73,728 bytes
    config, _ = _budget_config(small_moe_model_path, 0.4, expert_read_method=ReadMethod.WILLNEED)
    with Engine(small_moe_model_path, config) as engine:
        n_layer, n_expert = engine.experts.map.n_layer, engine.experts.map.n_expert
        pageout = engine.experts._io._shares_folios.reshape(n_layer, n_expert)
    expected = np.zeros(n_expert, dtype=bool)
    expected[[0, 1, -2, -1]] = True  # starting within 100,000 bytes of the tensor's start, or ending within its end
    assert (pageout == expected).all()


def test_the_budget_holds_with_every_expert_evicted_without_pageout(small_moe_model_path, monkeypatch):
    monkeypatch.setattr(experts_manager, "LARGEST_FOLIO", 0)  # MADV_DONTNEED + FADV_DONTNEED for all
    test_resident_model_bytes_stay_within_the_budget_through_a_generation(small_moe_model_path, 2, ReadMethod.WILLNEED)


def test_an_expert_evicted_while_its_read_may_be_landing_is_evicted_again(small_moe_model_path, monkeypatch):
    # A WILLNEED read's pages are locked until they land: an eviction then leaves them behind.
    landing = 3600.0  # so that the worker never runs the second eviction itself: the test does
    monkeypatch.setattr(expert_io, "_LANDING_S", landing)
    config, _ = _budget_config(small_moe_model_path, 0.4, expert_read_method=ReadMethod.WILLNEED)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        io = manager._io
        key = int(np.flatnonzero(~manager.cache.resident)[0])
        keys = np.array([key])
        manager.cache.resident[key] = True  # as if admitted: a read for it is not dropped
        io.read(keys, io.current_stamp)
        io.wait_for(keys)  # landed (in flight, locked pages would outlive both evictions until they land)
        manager.cache.resident[key] = False  # what the cache does when it lets the key go
        io.evict(keys)
        assert io.wait_idle()
        assert io.evictions_queued[key] == 1  # once more when the read has landed
        io._evict_again(now=time.perf_counter() + landing)  # as the worker would once the read has landed
        assert io.evictions_queued[key] == 0
        pages = [residency(start, end) for start, end in io._evict_spans[key]]
    assert not any(p.any() for p in pages)


def test_reads_do_not_outrun_the_evictions_that_make_room_for_them(small_moe_model_path):
    # On 2 cores llama.cpp's spinning threads can keep the eviction worker waiting: a read
    # asked for then first does the queued evictions beyond the backlog limit itself.
    config, _ = _budget_config(small_moe_model_path, 0.4, expert_read_method=ReadMethod.WILLNEED)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        io, wanted = manager._io, manager.cache.resident
        engine.chat(QUESTION, GREEDY)
        assert io.wait_idle() and io._backlog_limit == 0  # 2% of this budget is less than an expert
        kept = np.flatnonzero(wanted)
        assert all(residency(*span).any() for span in io._evict_spans[kept[0]])
        busy, release = threading.Event(), threading.Event()
        io.call(lambda: busy.set() or release.wait())  # the worker is busy until released
        assert busy.wait(10)
        try:
            wanted[kept[:2]] = False  # what the cache does when it lets keys go
            io.evict(kept[:2])
            assert io._keys_to_evict == 2
            io.read(np.flatnonzero(~wanted)[:1], io.current_stamp)
            assert io._keys_to_evict == 0  # evicted here, while the worker is still busy
            assert not any(residency(*span).any() for key in kept[:2] for span in io._evict_spans[key])
        finally:
            release.set()
        assert io.wait_idle()


@pytest.mark.parametrize("positions", [True, False], ids=["to positions", "into slots"])
def test_a_direct_read_counts_as_read_even_when_its_expert_is_let_go_of_before_it_lands(
    small_moe_model_path, monkeypatch, positions
):
    # A wrong guess is often let go of while its read is still in flight: the disk reads it
    # all the same, so its bytes count as read (and as wasted), not as nothing.
    monkeypatch.setattr(experts_manager, "POSITIONS", positions)
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        io, wanted = manager._io, manager.cache.resident
        engine.chat(QUESTION, GREEDY)
        assert io.wait_idle()
        loose = getattr(io, "_loose", {})  # (slots: evicted, still mapped in place)
        key = next(k for k in np.flatnonzero(~wanted).tolist() if (io._slot[k] < 0).all() and (k, 0) not in loose)
        nbytes = int(io._sizes[key].sum())
        before = io.counters.bytes_read
        wanted[key] = True  # as the cache does when it admits a guess
        io.read(np.array([key]), speculative=True)
        wanted[key] = False  # and when it lets the guess go
        io.evict(np.array([key]))
        assert io.bytes_read_for(np.array([key])) == nbytes
        while io._landing:  # the disk still writes into the memory: it is freed as the reads land
            io._collect(1)
        assert io.counters.bytes_read - before == nbytes


def test_a_read_ahead_never_evicts_what_the_running_layer_uses(small_moe_model_path, monkeypatch):
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_lookahead=3)
    checked = []
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        original = manager._read_ahead

        def checking(layer, in_use, guesses):
            original(layer, in_use, guesses)
            checked.append(bool(manager.cache.resident[in_use].all()))

        monkeypatch.setattr(manager, "_read_ahead", checking)
        engine.chat(QUESTION, GREEDY)
        assert engine.expert_stats().speculative_reads > 0
    assert checked and all(checked)


def test_a_guess_that_would_all_hit_is_pinned_without_a_cache_admission(small_moe_model_path, monkeypatch):
    # Room for most experts: many guesses all hit, some do not.
    config, _ = _budget_config(small_moe_model_path, 0.8, expert_lookahead=1, expert_read_method=ReadMethod.DIRECT)
    all_hits, admitted = [], []
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        cache, read_ahead, admit = manager.cache, manager._read_ahead, manager.cache.admit
        n = manager.map.n_expert

        def recording_admit(keys, pinned):
            admitted.append(keys.tolist())
            return admit(keys, pinned)

        def checking(layer, in_use, guesses):
            keys = [(layer + 1) * n + e for e in guesses[0] if not manager._ahead[(layer + 1) * n + e]]
            hits = bool(keys) and bool(cache.resident[keys].all())
            before = len(admitted)
            read_ahead(layer, in_use, guesses)
            assert manager._ahead[[(layer + 1) * n + e for e in guesses[0]]].all()  # every guess pinned
            if hits:  # nothing to read: no admission (tens of microseconds on the computing thread)
                assert len(admitted) == before
                all_hits.append(layer)
            elif keys:
                assert admitted[before:] == [keys]

        monkeypatch.setattr(cache, "admit", recording_admit)
        monkeypatch.setattr(manager, "_read_ahead", checking)
        engine.chat(QUESTION, GREEDY)
    assert all_hits and admitted  # both kinds of guess were seen


@pytest.mark.parametrize(
    ("prefetch", "lookahead", "method", "positions"),
    [(False, 0, ReadMethod.PREAD, True)]
    + [(True, *s, True) for s in READ_SET_UPS]
    + [(True, 1, ReadMethod.DIRECT, False)],
)
def test_the_manager_does_not_change_the_answer(
    small_moe_model_path, monkeypatch, prefetch, lookahead, method, positions
):
    monkeypatch.setattr(experts_manager, "POSITIONS", positions)  # (DIRECT reads: to positions, or into slots)
    # The same kernels without the manager: mapped, not repacked (repacked weights round differently).
    with Engine(small_moe_model_path, EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED)) as engine:
        assert engine.experts is None
        reference = engine.chat(QUESTION, GREEDY).text
    config, _ = _budget_config(
        small_moe_model_path, 0.3, expert_prefetch=prefetch, expert_lookahead=lookahead, expert_read_method=method
    )
    with Engine(small_moe_model_path, config) as engine:
        assert engine.experts is not None and engine.experts.prefetch is prefetch
        managed = engine.chat(QUESTION, GREEDY).text
        assert engine.expert_stats().misses > 0
    assert managed == reference


def _in_ram_only_while_loose(io: DirectExpertIO, evicted: np.ndarray) -> bool:
    """Whether each matrix of the `evicted` experts is in RAM exactly while its slot waits, loose,
    for a read to move it."""
    return all(
        residency(*io._spans[key, matrix]).any() == ((key, matrix) in io._loose)
        for key in evicted.tolist()
        for matrix in range(3)
    )


def test_where_misses_will_be_many_reads_are_direct_and_evicted_experts_empty(small_moe_model_path, slot_reads):
    config, budget = _budget_config(small_moe_model_path, 0.3)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        assert manager.read_method is ReadMethod.DIRECT and isinstance(manager._io, DirectExpertIO)
        engine.chat(QUESTION, GREEDY)
        io = manager._io
        evicted = np.flatnonzero(~manager.cache.resident)
        kept = np.flatnonzero(manager.cache.resident)
        assert len(evicted) and len(kept)
        assert _in_ram_only_while_loose(io, evicted)
        assert all(residency(*io._spans[k, m]).all() for k in kept.tolist() for m in range(3))
        outside = io.unmapped_bytes + len(io._loose) * io._slots.slot_bytes  # RAM held beyond the cache's experts
        assert outside <= io._slots.spare_limit * io._slots.slot_bytes
        assert io._slots.held == np.count_nonzero(io._slot >= 0) + len(io._loose)
        assert engine.expert_stats().unpredicted_reads == 0


def test_the_sweep_backs_off_unless_it_evicts_a_slot_the_cache_let_go_of(small_moe_model_path, slot_reads):
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        engine.chat(QUESTION, GREEDY)
        io, cache = manager._io, manager.cache
        assert io.wait_idle()
        shortest, longest = experts_manager.SWEEP_SECONDS
        manager._sweep_interval = shortest
        evicted = np.flatnonzero(~cache.resident & (io.evictions_queued == 0))
        # An expert with no slot holds no RAM of its own (pages mincore saw there were passing).
        assert len(evicted) and io.evict_now(evicted[:1]) == 0
        io.call(manager._sweep)
        assert io.wait_idle() and manager._sweep_interval == 2 * shortest
        # A slot under an expert the cache no longer wants is a real stray: evicted, sweep again soon.
        stray = int(np.flatnonzero(cache.resident)[0])
        assert (io._slot[stray] >= 0).all() and residency(*io._spans[stray, 0]).all()
        cache.resident[stray] = False
        io.call(manager._sweep)
        assert io.wait_idle() and manager._sweep_interval == shortest
        assert not residency(*io._spans[stray, 0]).any()


def test_reads_go_direct_where_any_use_should_miss_and_are_guessed_where_many_should(small_moe_model_path, tmp_path):
    info = inspect_model(small_moe_model_path)
    experts = expert_map(info)
    budget = fixed_bytes(info) + int(0.3 * experts.all_experts_bytes)
    cold = experts_manager.ExpertManager(info, experts, budget)
    assert cold.expected_hit_rate() == pytest.approx(cold.cache.capacity / cold.cache.n_keys)
    assert cold.read_method is ReadMethod.DIRECT  # 0.3 of the experts, used alike: most uses miss
    assert cold.lookahead == experts_manager.LOOKAHEAD_LAYERS
    assert cold.guess_choice is not None  # and whether guesses pay is measured while decoding
    # Histories in which the experts that fit were used nearly always (a few misses expected:
    # direct reads, no guesses), and always (the page cache).
    history = history_file(tmp_path, info)
    usage = np.ones((experts.n_layer, experts.n_expert), dtype=np.int64)
    usage.ravel()[: cold.cache.capacity] = 200
    save_history(history, None, usage, experts.n_expert_used)
    warm = experts_manager.ExpertManager(info, experts, budget, history_path=history)
    expected = warm.expected_hit_rate()
    assert experts_manager.GUESSES_BELOW_HIT_RATE < expected < experts_manager.DIRECT_BELOW_HIT_RATE
    assert warm.read_method is ReadMethod.DIRECT and warm.lookahead == 0 and warm.guess_choice is None
    usage.ravel()[: cold.cache.capacity] = 100_000
    save_history(history, None, usage, experts.n_expert_used)
    hot = experts_manager.ExpertManager(info, experts, budget, history_path=history)
    assert hot.expected_hit_rate() > experts_manager.DIRECT_BELOW_HIT_RATE
    assert hot.read_method is ReadMethod.WILLNEED and hot.lookahead == 0
    roomy = experts_manager.ExpertManager(info, experts, info.file_size + (8 << 20))  # room for every expert
    assert roomy.expected_hit_rate() > experts_manager.DIRECT_BELOW_HIT_RATE
    assert roomy.read_method is ReadMethod.WILLNEED


def test_where_guesses_may_pay_decode_tokens_are_run_with_them_and_without_and_timed(small_moe_model_path):
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    reference = _reference_answer(small_moe_model_path)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        assert manager.guess_choice is not None  # no history: most uses should miss
        hook_saw = []  # the lookahead the router hook read for each decode token's layer 0
        predicted = manager.experts_predicted

        def noting_lookahead(layer, experts, *args):
            if layer == 0 and len(experts) == 1:
                hook_saw.append(manager.lookahead)
            predicted(layer, experts, *args)

        manager.experts_predicted = noting_lookahead
        answer = engine.chat(QUESTION, GREEDY)
        stats = engine.expert_stats()
    assert answer.text == reference
    decoded = stats.guessed_tokens + stats.unguessed_tokens
    assert decoded == len(hook_saw) == answer.stats.tokens_out - 1  # the first token comes from the prompt
    # The first trial epochs, guessing and not in turn.
    epochs = guess_choice.EPOCH_TOKENS
    assert len(hook_saw) >= 4 * epochs
    ahead = experts_manager.LOOKAHEAD_LAYERS
    assert hook_saw[: 4 * epochs] == [ahead] * epochs + [0] * epochs + [ahead] * epochs + [0] * epochs
    assert stats.guessed_tokens == hook_saw.count(ahead) and stats.unguessed_tokens == hook_saw.count(0)
    assert stats.guessed_ms_per_token > 0 and stats.unguessed_ms_per_token > 0
    assert stats.speculative_reads > 0 and stats.lookahead == experts_manager.LOOKAHEAD_LAYERS


def _reference_answer(path) -> str:
    with Engine(path, EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED)) as engine:
        return engine.chat(QUESTION, GREEDY).text


def test_a_wrong_prediction_costs_a_read_never_the_answer(small_moe_model_path, monkeypatch):
    # With DIRECT an expert not read is zeros, not a page fault: llama.cpp's own choice is checked.
    reference = _reference_answer(small_moe_model_path)
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        original = manager.experts_predicted

        def mistaken(layer, experts, layer_input=None, guesses=()):
            original(layer, np.roll(experts, 1, axis=1), layer_input, guesses)  # every expert one off

        monkeypatch.setattr(manager, "experts_predicted", mistaken)
        assert engine.chat(QUESTION, GREEDY).text == reference
        stats = engine.expert_stats()
    assert stats.prediction_mismatches > 0 and stats.unpredicted_reads > 0


def test_each_expert_matrix_is_in_place_before_the_node_using_it_runs(small_moe_model_path, monkeypatch):
    # The hook waits for a layer's gate, up and down matrices one at a time, each while llama.cpp
    # asks about the node that uses it (before computing it): a late down matrix lands meanwhile.
    reference = _reference_answer(small_moe_model_path)
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        events = []
        select, needed = manager.experts_selected, manager.matrix_needed

        def selected(layer, experts, *, matrix_calls=False):
            events.append(("selected", layer, matrix_calls))
            select(layer, experts, matrix_calls=matrix_calls)

        def matrix_needed(layer, matrix):
            wait = manager._waits.get(layer)  # every expert llama.cpp chose for the layer
            needed(layer, matrix)
            if wait is None:  # waited for already (at the top-k, before the hook had seen these nodes)
                return
            io = manager._io
            landed = (io._slot[wait.keys, matrix] >= 0).all() and not io.in_flight(wait.keys, (matrix,))
            events.append(("matrix", layer, matrix, bool(landed)))

        monkeypatch.setattr(manager, "experts_selected", selected)
        monkeypatch.setattr(manager, "matrix_needed", matrix_needed)
        # A slow disk: a read counts as landed only once someone waits for it.
        collect = manager._io._collect
        monkeypatch.setattr(manager._io, "_collect", lambda at_least: collect(at_least) if at_least else None)
        assert engine.chat(QUESTION, GREEDY).text == reference
    assert engine._router_hook._matrix_calls_seen
    selections = [i for i, event in enumerate(events) if event[0] == "selected"]
    assert sum(events[i][2] for i in selections) >= len(selections) - 1  # all but the very first, by the hook
    for i in selections:
        layer = events[i][1]
        assert events[i + 1 : i + 4] == [("matrix", layer, m, True) for m in range(3)], events[i : i + 4]


@pytest.mark.parametrize("kernel_moves", [True, False])
def test_evicted_slots_move_to_the_next_reads_or_are_unmapped_where_the_kernel_cannot(
    small_moe_model_path, monkeypatch, kernel_moves, slot_reads
):
    moves = []

    def move(old, new, nbytes):
        moves.append(kernel_moves)
        return kernel_moves and slots.move_mapping(old, new, nbytes)

    monkeypatch.setattr(direct_io, "move_mapping", move)
    reference = _reference_answer(small_moe_model_path)
    config, budget = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        assert engine.chat(QUESTION, GREEDY).text == reference
        io, cache = engine.experts._io, engine.experts.cache
        # Settled after every layer: evicted slots no read took stay loose within the spares' allowance.
        assert len(io._loose) + io._slots.n_spare <= io._slots.spare_limit
        assert io.evictions_queued.sum() == len(io._loose) and (not io._loose or kernel_moves)
        evicted = np.flatnonzero(~cache.resident)
        assert _in_ram_only_while_loose(io, evicted)
        assert engine.memory_report().model_resident_bytes <= budget * 1.05
    assert moves.count(kernel_moves) == len(moves) > 0
    assert len(moves) > 1 if kernel_moves else len(moves) == 1  # tried once, then no more


def test_evicted_slots_wait_loose_within_the_spare_allowance_the_oldest_unmapped_first(
    small_moe_model_path, monkeypatch, slot_reads
):
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        engine.chat(QUESTION, GREEDY)
        manager = engine.experts
        io, wanted = manager._io, manager.cache.resident  # (the cache's residency is what the reads serve)
        assert io.wait_idle()  # no sweep running meanwhile (it would see these evictions as strays)
        allowance = io._slots.spare_limit
        in_place = [
            key
            for key in np.flatnonzero(wanted).tolist()
            if io._placed[key] and (io._slot[key] >= 0).all() and io._ensured_at[key] != io.current_stamp
        ]
        n_evicted = allowance // 3 + 2  # more matrices than the allowance holds
        assert len(in_place) > n_evicted
        evicted = in_place[:n_evicted]
        for key in evicted:  # one at a time, as layers let experts go
            wanted[key] = False
            io.evict(np.array([key]))
            io.settle()
            assert len(io._loose) + io._slots.n_spare <= allowance
        loose_keys = {key for key, _ in io._loose}
        assert loose_keys and loose_keys <= set(evicted[-(allowance // 3 + 1) :])  # the latest kept
        assert _in_ram_only_while_loose(io, np.array(evicted))

        # A read takes a loose slot (moved, not mapped anew) and lands the file's bytes.
        placed, moved = [], []
        monkeypatch.setattr(io._slots, "place", lambda *a, place=io._slots.place: placed.append(a) or place(*a))
        monkeypatch.setattr(direct_io, "move_mapping", lambda *a: moved.append(a) or slots.move_mapping(*a))
        untouched = [k for k in np.flatnonzero(~wanted).tolist() if (io._slot[k] < 0).all() and k not in loose_keys]
        fresh = untouched[0]
        wanted[fresh] = True
        io.read(np.array([fresh]))
        io.wait_for(np.array([fresh]))
        assert len(moved) == 3 and not placed
        with open(small_moe_model_path, "rb") as f:
            for matrix in range(3):
                (start, end), offset = io._spans[fresh, matrix], int(io._file_spans[fresh, matrix, 0])
                f.seek(offset)
                assert ctypes.string_at(int(start), int(end - start)) == f.read(int(end - start))


def test_a_failing_router_hook_puts_the_file_back_under_the_experts(small_moe_model_path, monkeypatch):
    reference = _reference_answer(small_moe_model_path)
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts

        def broken(layer, experts, *, matrix_calls=False):
            raise RuntimeError("a llama.cpp whose nodes we no longer understand")

        monkeypatch.setattr(manager, "experts_selected", broken)
        assert engine.experts.positioned and engine._router_hook._pointed
        assert engine.chat(QUESTION, GREEDY).text == reference
        assert manager.read_method is ReadMethod.WILLNEED and isinstance(manager._io, expert_io.ExpertIO)
        assert not engine._router_hook._pointed  # the expert tensors point at the mapped file again


def test_where_direct_reads_do_not_work_experts_are_read_with_willneed(small_moe_model_path, monkeypatch):
    monkeypatch.setattr(experts_manager, "direct_reads_work", lambda path, offset: "the filesystem refuses O_DIRECT")
    reference = _reference_answer(small_moe_model_path)
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        assert engine.experts.read_method is ReadMethod.WILLNEED
        assert engine.chat(QUESTION, GREEDY).text == reference


def test_direct_reads_work_on_the_model_file(small_moe_model_path):
    assert direct_reads_work(small_moe_model_path) is None


def test_a_session_leaves_its_expert_usage_for_the_next_to_start_from(small_moe_model_path, tmp_path):
    config, _ = _budget_config(small_moe_model_path, 0.4)
    config = dataclasses.replace(config, expert_history_dir=tmp_path)
    with Engine(small_moe_model_path, config) as engine:
        assert engine.experts.seed_uses is None  # the first session starts cold
        reference = engine.chat(QUESTION, GREEDY).text
        used = engine.expert_stats().usage
    (saved,) = tmp_path.glob("*.npz")
    np.testing.assert_array_equal(load_history(saved, *used.shape), used)
    with Engine(small_moe_model_path, config) as engine:
        seeded = engine.experts.seed_uses.reshape(used.shape)
        np.testing.assert_allclose(seeded / seeded.sum(), used / used.sum())
        assert engine.chat(QUESTION, GREEDY).text == reference
    np.testing.assert_array_equal(load_history(saved, *used.shape), 2 * used)


def test_the_manager_stays_out_of_the_way_when_the_model_fits(small_moe_model_path):
    info = inspect_model(small_moe_model_path)
    config = EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED, expert_budget_bytes=info.file_size)
    with Engine(small_moe_model_path, config) as engine:
        assert engine.experts is None and engine.expert_stats() is None


def test_a_budget_below_the_minimum_is_refused_with_the_minimum(small_moe_model_path):
    info = inspect_model(small_moe_model_path)
    need = minimum_budget(info)
    config = EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED, expert_budget_bytes=need - 4096)
    with pytest.raises(BudgetTooSmallError, match="needs at least"):
        Engine(small_moe_model_path, config)
