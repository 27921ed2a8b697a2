"""Which weights llama.cpp repacks in each memory mode, read back from llama.cpp's own log."""

from __future__ import annotations

import re

import pytest

from engine import llama_log
from engine.config import EngineConfig, Kernels, MemoryMode
from engine.engine import Engine
from engine.experts.map import EXPERT_TENSORS, expert_map
from engine.experts.page_control import mappings_of, resident_bytes
from engine.kernel_check import llama_system_info
from engine.model_info import inspect_model
from engine.weight_layout import WeightLayout, fixed_repackable, repack_row_multiple
from tests.engine.test_experts import GREEDY, QUESTION, _budget_config

MIB = 2**20


def _model_buffers(lines: list[str]) -> dict[str, float]:
    """llama.cpp's "load_tensors: <buffer> model buffer size = N MiB" lines."""
    found = {}
    for line in lines:
        match = re.search(r"(\S+) model buffer size =\s*([\d.]+) MiB", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def _load(path, config) -> tuple[Engine, dict[str, float]]:
    mark = llama_log.mark()
    engine = Engine(path, config)
    return engine, _model_buffers(llama_log.lines_since(mark))


@pytest.fixture
def fast_kernels():
    if repack_row_multiple(llama_system_info()) is None:
        pytest.skip("this llama.cpp build has no repacked Q4_0 kernel for this CPU")


def test_file_backed_mode_repacks_the_weights_every_token_uses_and_maps_the_experts(small_moe_model_path, fast_kernels):
    info = inspect_model(small_moe_model_path)
    repackable = fixed_repackable(info, repack_row_multiple(llama_system_info()))
    names = {t.name.split(".")[-2] for t in repackable}
    assert {"attn_q", "attn_k", "attn_v", "attn_output"} <= names
    assert not names & {*EXPERT_TENSORS, "token_embd"}
    config, _ = _budget_config(small_moe_model_path, 0.3, kernels=Kernels.FAST)
    engine, buffers = _load(small_moe_model_path, config)
    with engine:
        assert engine.layout is WeightLayout.EXPERTS_MAPPED
        copied = sum(t.nbytes for t in repackable)
        assert buffers["CPU_REPACK"] == round(copied / MIB, 2)
        assert engine._rt.copied_weight_bytes == copied
        engine.chat(QUESTION, GREEDY)
        stats = engine.expert_stats()
        assert stats.misses > 0  # the experts are still read and evicted on the mapping
        # The copies count once, as memory of llama.cpp's; their file pages not at all.
        assert copied < stats.resident_bytes <= stats.budget_bytes * 1.05
        mapped = sum(resident_bytes(m.start, m.end) for m in mappings_of(small_moe_model_path))
        # (Spare expert slots are RAM the report counts outside the file's mapping.)
        reported = engine.memory_report().model_resident_bytes - engine.experts.unmapped_bytes
        assert reported - copied <= mapped


def test_in_memory_mode_repacks_everything_and_the_safe_kernels_nothing(small_moe_model_path, fast_kernels):
    info = inspect_model(small_moe_model_path)
    experts = expert_map(info)
    engine, buffers = _load(small_moe_model_path, EngineConfig(n_ctx=512, memory_mode=MemoryMode.IN_MEMORY))
    with engine:
        assert engine.layout is WeightLayout.REPACKED
        assert buffers["CPU_REPACK"] * MIB > experts.all_experts_bytes
    config = EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED, kernels=Kernels.SAFE)
    engine, buffers = _load(small_moe_model_path, config)
    with engine:
        assert engine.layout is WeightLayout.MAPPED
        assert "CPU_REPACK" not in buffers and engine._rt.copied_weight_bytes == 0


def test_the_row_interleave_follows_llama_cpps_feature_report():
    assert repack_row_multiple("CPU : AVX2 = 1 | AVX512 = 1 | REPACK = 1 |") == 8
    assert repack_row_multiple("CPU : NEON = 1 | DOTPROD = 1 | REPACK = 1 |") == 4
    assert repack_row_multiple("CPU : AVX2 = 1 | REPACK = 0 |") is None
    assert repack_row_multiple("CPU : SSE3 = 1 | REPACK = 1 |") is None
