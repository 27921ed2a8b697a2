"""Experts read to positions of a pool that llama.cpp's expert tensors point at (engine/experts/positions.py)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from engine.config import EngineConfig, MemoryMode, SamplingParams
from engine.engine import Engine
from engine.experts.direct_io import DirectExpertIO
from engine.experts.io import ReadMethod
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
        assert io.wait_idle()
        placed = np.flatnonzero(io._placed & (io._matrices_left == 0))
        assert len(placed) > 0
        with open(small_moe_model_path, "rb") as f:
            for key in placed.tolist():
                layer, expert = divmod(key, experts.n_expert)
                position = int(io.positions(layer)[expert])
                for m, (offset, nbytes) in enumerate(experts.ranges(layer, expert)):
                    data, stride, _ = io.tensor_placement(layer, m)
                    f.seek(offset)
                    assert ctypes.string_at(data + position * stride, nbytes) == f.read(nbytes), (key, m)


def test_reads_reuse_the_positions_pages_without_changing_page_tables(small_moe_model_path, reference):
    config, budget = _direct_config(small_moe_model_path)
    with Engine(small_moe_model_path, config) as engine:
        io, cache = engine.experts._io, engine.experts.cache
        assert engine.chat(QUESTION, GREEDY).text == reference  # the pool fills
        capacity, populates, releases, read = cache.capacity, io.populates, io.releases, io.counters.bytes_read
        assert engine.chat(QUESTION, GREEDY).text == reference
        assert io.counters.bytes_read - read > 10 * io.block_bytes  # misses were read...
        # ...into pages already there: new ones only as the cache grows, given back as it shrinks.
        assert io.populates - populates <= max(0, cache.capacity - capacity)
        assert io.releases - releases <= max(0, capacity - cache.capacity)
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
