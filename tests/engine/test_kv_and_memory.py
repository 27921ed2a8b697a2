"""The hybrid (iSWA) KV cache and the memory report."""

from __future__ import annotations

import re

import pytest

from engine import llama_log
from engine.chunks import FinishReason
from engine.config import ConfigError, EngineConfig, FlashAttention, KvType, MemoryMode, SamplingParams
from engine.engine import Engine

MIB = 1 << 20
# llama_kv_cache: size =   64.00 MiB ( 16384 cells,   1 layers,  1/1 seqs), ...
_KV_LINE = re.compile(r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers")


def _allocated_by_llama_cpp(lines):
    return sorted((int(cells), int(layers), float(mib)) for mib, cells, layers in _KV_LINE.findall("\n".join(lines)))


def test_swa_model_keeps_only_the_window_for_its_window_layers(tiny_swa_model_path):
    n_ctx = 16384
    mark = llama_log.mark()
    with Engine(tiny_swa_model_path, EngineConfig(n_ctx=n_ctx, n_batch=512)) as engine:
        kv = engine.kv
        report = engine.memory_report()
    allocated = _allocated_by_llama_cpp(llama_log.lines_since(mark))
    # One global layer with the whole context, three window layers with 4096 + 512 cells.
    assert (kv.global_layers, kv.global_cells) == (1, n_ctx)
    assert (kv.window_layers, kv.window_cells) == (3, 4096 + 512)
    assert allocated == sorted(
        [(kv.window_cells, 3, round(kv.window_bytes / MIB, 2)), (n_ctx, 1, round(kv.global_bytes / MIB, 2))]
    )
    full_cache = 4 * n_ctx * kv.bytes_per_cell_per_layer
    assert report.kv_bytes == kv.total_bytes < full_cache / 2
    assert (report.kv_global_bytes, report.kv_window_bytes) == (kv.global_bytes, kv.window_bytes)


def test_global_only_model_reports_a_full_cache(tiny_model_path):
    mark = llama_log.mark()
    with Engine(tiny_model_path, EngineConfig(n_ctx=1000)) as engine:
        kv = engine.kv
    assert (kv.global_cells, kv.window_bytes) == (1024, 0)  # llama.cpp pads the context to 256
    assert _allocated_by_llama_cpp(llama_log.lines_since(mark)) == [(1024, 4, round(kv.total_bytes / MIB, 2))]


def test_swa_model_reuses_its_cache_across_turns(tiny_swa_model_path):
    greedy = SamplingParams(temperature=0.0, max_tokens=16)
    turn = [{"role": "user", "content": "Hello"}]
    with Engine(tiny_swa_model_path, EngineConfig(n_ctx=8192)) as engine:
        first = engine.chat(turn, greedy)
        second = engine.chat(
            [*turn, {"role": "assistant", "content": first.text}, {"role": "user", "content": "Hi"}], greedy
        )
    assert second.stats.reused_tokens == first.stats.tokens_in + first.stats.tokens_out - 1


def test_in_memory_report(tiny_model_path):
    with Engine(tiny_model_path, EngineConfig(n_ctx=512, memory_mode=MemoryMode.IN_MEMORY)) as engine:
        report = engine.memory_report()
    assert not report.model_file_backed
    assert report.model_resident_bytes == report.model_bytes
    assert 0.9 * engine.info.file_size < report.model_bytes <= engine.info.file_size
    assert report.rss_bytes >= report.rss_anon_bytes > 0


def test_file_backed_report_counts_resident_pages_of_the_mapping(tiny_model_path):
    with Engine(tiny_model_path, EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED)) as engine:
        result = engine.chat([{"role": "user", "content": "Hi"}], SamplingParams(max_tokens=4))
        report = engine.memory_report()
    assert result.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
    assert report.model_file_backed
    # Having just run, the model is in RAM: every weight page of the mapping is resident.
    # Weights llama.cpp repacked count as their copies; a file page they share with another
    # tensor (the tiny model's are smaller than a page) counts as well.
    shared_pages = 2 * len(engine._rt.copied_ranges)
    assert report.model_bytes <= report.model_resident_bytes <= engine.info.file_size + 4096 * (1 + shared_pages)


def test_auto_mode_picks_file_backed_when_the_budget_is_too_small(tiny_model_path):
    small = EngineConfig(n_ctx=512, memory_budget_bytes=2 << 20)  # over the file, under file + KV + headroom
    with Engine(tiny_model_path, small) as engine:
        assert engine.memory_mode is MemoryMode.FILE_BACKED
    with Engine(tiny_model_path, EngineConfig(n_ctx=512, memory_budget_bytes=8 << 30)) as engine:
        assert engine.memory_mode is MemoryMode.IN_MEMORY


# llama_context: n_ubatch              = 512
_CONTEXT_PARAM = re.compile(r"llama_context: (n_batch|n_ubatch|flash_attn)\s*= (\S+)")


def _context_params(lines) -> dict[str, str]:
    return dict(_CONTEXT_PARAM.findall("\n".join(lines)))


def test_the_context_is_created_with_the_measured_choice(tiny_model_path):
    # bench/context.py on the 4B shape (README, "Speed as the conversation grows"): an f16
    # cache without flash attention, batches of 512 tokens. llama.cpp's own default would
    # be flash attention "auto", which turns it on for the CPU.
    mark = llama_log.mark()
    with Engine(tiny_model_path, EngineConfig(n_ctx=2048)):
        pass
    assert _context_params(llama_log.lines_since(mark)) == {
        "n_batch": "512",
        "n_ubatch": "512",
        "flash_attn": "disabled",
    }


def test_a_q8_cache_turns_flash_attention_on_and_cannot_go_without_it(tiny_model_path):
    mark = llama_log.mark()
    with Engine(tiny_model_path, EngineConfig(n_ctx=2048, kv_type=KvType.Q8_0)):
        pass
    assert _context_params(llama_log.lines_since(mark))["flash_attn"] == "enabled"
    with pytest.raises(ConfigError, match="needs flash attention"):
        EngineConfig(kv_type=KvType.Q8_0, flash_attention=FlashAttention.OFF).check()


def test_a_full_window_cache_gives_window_layers_the_whole_context(tiny_swa_model_path):
    """What bench/context.py compares the window-bounded cache with (llama.cpp's swa_full)."""
    n_ctx = 16384
    mark = llama_log.mark()
    with Engine(tiny_swa_model_path, EngineConfig(n_ctx=n_ctx, full_window_cache=True)) as engine:
        kv = engine.kv
    assert (kv.window_layers, kv.window_cells) == (3, n_ctx)
    assert _allocated_by_llama_cpp(llama_log.lines_since(mark)) == sorted(
        [(n_ctx, 3, round(kv.window_bytes / MIB, 2)), (n_ctx, 1, round(kv.global_bytes / MIB, 2))]
    )
