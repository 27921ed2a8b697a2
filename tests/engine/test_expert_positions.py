"""Experts read to positions of a pool that llama.cpp's expert tensors point at (engine/experts/positions.py)."""

from __future__ import annotations

import ctypes
from dataclasses import replace

import numpy as np
import pytest

from engine.config import EngineConfig, MemoryMode, SamplingParams
from engine.engine import Engine
from engine.experts import direct_io
from engine.experts import manager as experts_manager
from engine.experts.direct_io import DirectExpertIO
from engine.experts.io import ALL_MATRICES, ReadMethod
from engine.experts.manager import fixed_bytes
from engine.experts.map import expert_map
from engine.experts.positions import PositionedExpertIO, positions_fit
from engine.experts.router_hook import RouterHook, _Tensor
from engine.model_info import inspect_model

GREEDY = SamplingParams(temperature=0, max_tokens=24, seed=1)
QUESTION = [{"role": "user", "content": "Summarise the plot of a long novel about the sea, please."}]


def _direct_config(path, fraction: float = 0.3) -> tuple[EngineConfig, int]:
    info = inspect_model(path)
    budget = fixed_bytes(info) + int(fraction * expert_map(info).all_experts_bytes)
    config = EngineConfig(
        n_ctx=512, memory_mode=MemoryMode.FILE_BACKED, expert_budget_bytes=budget, expert_read_method=ReadMethod.DIRECT
    )
    return config, budget


@pytest.fixture(scope="module")
def reference(small_moe_model_path) -> str:
    with Engine(small_moe_model_path, EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED)) as engine:
        assert engine.experts is None
        return engine.chat(QUESTION, GREEDY).text


def test_expert_tensors_point_at_positions_that_hold_the_files_bytes(small_moe_model_path, reference):
    config, _ = _direct_config(small_moe_model_path)
    experts = expert_map(inspect_model(small_moe_model_path))
    assert (experts.base_offsets % 4096 != 0).all()  # (so the reads' page phases are exercised)
    with Engine(small_moe_model_path, config) as engine:
        io = engine.experts._io
        assert isinstance(io, PositionedExpertIO) and engine.experts.positioned
        assert engine.chat(QUESTION, GREEDY).text == reference
        pointed = engine._router_hook._pointed
        assert len(pointed) == experts.n_layer * 3
        placements = {io.tensor_placement(layer, m) for layer in range(experts.n_layer) for m in range(3)}
        for address in pointed:
            tensor = _Tensor.from_address(address)
            assert (tensor.data, tensor.nb[2], tensor.ne[2]) in placements
        _assert_positions_hold_the_files_bytes(io, experts, small_moe_model_path)


def _assert_positions_hold_the_files_bytes(io: PositionedExpertIO, experts, path) -> None:
    assert io.wait_idle()
    placed = np.flatnonzero(io._placed & (io._matrices_left == 0))
    assert len(placed) > 0
    with open(path, "rb") as f:
        for key in placed.tolist():
            layer, expert = divmod(key, experts.n_expert)
            position = int(io.positions(layer)[expert])
            for m, (offset, nbytes) in enumerate(experts.ranges(layer, expert)):
                data, stride, _ = io.tensor_placement(layer, m)
                f.seek(offset)
                assert ctypes.string_at(data + position * stride, nbytes) == f.read(nbytes), (key, m)


@pytest.mark.parametrize("positions", [True, False], ids=["positions", "slots"])
def test_exact_reads_pass_speculative_reads_held_in_our_queue(small_moe_model_path, reference, positions, monkeypatch):
    """The disk serves reads in the order given: speculative ones wait in our queue, a matrix
    at a time here, and an exact read goes straight to the kernel, ahead of them."""
    monkeypatch.setattr(direct_io, "SPECULATIVE_IN_FLIGHT", 1)
    monkeypatch.setattr(experts_manager, "POSITIONS", positions)
    config, budget = _direct_config(small_moe_model_path)
    with Engine(small_moe_model_path, replace(config, expert_lookahead=2)) as engine:
        io = engine.experts._io
        assert isinstance(io, PositionedExpertIO) == positions
        # What the kernel was given and has not returned, seen from outside the queue.
        speculative, in_kernel, most_speculative, passed = set(), set(), [0], [0]
        read, ensure, wait_for, submit, reap = io.read, io.ensure, io.wait_for, io._aio.submit, io._aio.reap

        def now_exact(keys):  # a guess asked for again exactly is no longer speculative
            speculative.difference_update(io._job_of.get((key, m)) for key in keys.tolist() for m in ALL_MATRICES)

        def spy_read(keys, stamp=0, **kwargs):
            first = io._next_job
            if not kwargs.get("speculative"):
                now_exact(keys)
            read(keys, stamp, **kwargs)
            if kwargs.get("speculative"):
                speculative.update(range(first, io._next_job))

        def spy_ensure(keys):
            now_exact(keys)
            return ensure(keys)

        def spy_wait_for(keys, matrices=ALL_MATRICES):
            now_exact(keys)
            return wait_for(keys, matrices)

        def spy_submit(reads):
            taken = submit(reads)
            in_kernel.update(r[0] for r in reads[:taken])
            most_speculative[0] = max(most_speculative[0], len(in_kernel & speculative))
            passed[0] += sum(1 for r in reads[:taken] if r[0] not in speculative) * bool(io._held)
            return taken

        def spy_reap(at_least=0):
            done = reap(at_least)
            in_kernel.difference_update(job for job, _ in done)
            return done

        io.read, io.ensure, io.wait_for = spy_read, spy_ensure, spy_wait_for
        io._aio.submit, io._aio.reap = spy_submit, spy_reap
        assert engine.chat(QUESTION, GREEDY).text == reference
        assert len(speculative) > 10
        assert most_speculative[0] == 1  # (all of a layer's guesses at once without the queue)
        assert passed[0] > 0  # exact reads went to the kernel while guesses waited
        assert engine.memory_report().model_resident_bytes <= budget * 1.05
        if positions:
            _assert_positions_hold_the_files_bytes(io, engine.experts.map, small_moe_model_path)


def test_reads_reuse_the_positions_pages_without_changing_page_tables(small_moe_model_path, reference):
    config, budget = _direct_config(small_moe_model_path)
    with Engine(small_moe_model_path, config) as engine:
        io, cache = engine.experts._io, engine.experts.cache
        assert engine.chat(QUESTION, GREEDY).text == reference  # the pool fills
        populates, releases, read = io.populates, io.releases, io.counters.bytes_read
        landings, grown, shrunk, resize = io.landings, [0], [0], cache.resize

        def resize_counted(new_capacity):  # (the capacity follows the sweep's measurements)
            grown[0] += max(0, new_capacity - cache.capacity)
            shrunk[0] += max(0, cache.capacity - new_capacity)
            return resize(new_capacity)

        cache.resize = resize_counted
        assert engine.chat(QUESTION, GREEDY).text == reference
        assert io.counters.bytes_read - read > 10 * io.block_bytes  # misses were read...
        # ...into pages already there: new ones only as the cache grows, given back as it shrinks,
        # or while an expert let go of still has a read landing in its position (not free until
        # then: rare, by the reads' timing; one such in about 40 runs of this test).
        late = io.landings - landings
        assert io.populates - populates <= grown[0] + late
        assert io.releases - releases <= shrunk[0] + late
        assert np.count_nonzero(io._populated) <= cache.capacity + io.spare
        assert engine.memory_report().model_resident_bytes <= budget * 1.05


def test_the_files_pages_others_read_do_not_count_as_ours(small_moe_model_path, reference):
    # mincore over a file mapping sees the page cache: the model's pages another process read
    # would look like our RAM under every expert, where llama.cpp no longer reads.
    config, budget = _direct_config(small_moe_model_path)
    with Engine(small_moe_model_path, config) as engine:
        manager = engine.experts
        assert engine.chat(QUESTION, GREEDY).text == reference
        small_moe_model_path.read_bytes()  # the whole file in the page cache
        manager._io.call(manager._sweep)
        assert manager._io.wait_idle()
        assert engine.memory_report().model_resident_bytes <= budget * 1.05
        assert manager.stats().peak_resident_bytes <= budget * 1.05


def test_where_the_tensors_cannot_be_pointed_experts_are_read_into_place(small_moe_model_path, reference, monkeypatch):
    def unrecognised(self, node, layer, matrix):
        raise ValueError("a ggml whose tensors are laid out otherwise")

    monkeypatch.setattr(RouterHook, "_point", unrecognised)
    config, _ = _direct_config(small_moe_model_path)
    with Engine(small_moe_model_path, config) as engine:
        io = engine.experts._io
        assert type(io) is DirectExpertIO and not engine.experts.positioned and not engine._router_hook._pointed
        assert engine.chat(QUESTION, GREEDY).text == reference
        assert engine.expert_stats().misses > 0


def test_positions_need_expert_matrices_of_whole_pages(tiny_model_path, small_moe_model_path):
    assert positions_fit(expert_map(inspect_model(small_moe_model_path)))
    tiny = expert_map(inspect_model(tiny_model_path))
    assert (tiny.matrix_bytes % 4096 != 0).any() and not positions_fit(tiny)
    config, _ = _direct_config(tiny_model_path, 0.5)
    with Engine(tiny_model_path, config) as engine:
        assert type(engine.experts._io) is DirectExpertIO and not engine._router_hook._pointed
