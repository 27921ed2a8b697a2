"""The llama.cpp build has no AMX path, and the kernel check falls back when a child crashes.

The crashing children are real: a Python process that dereferences a null pointer dies of
SIGSEGV exactly as llama.cpp's AMX matmul does on the first decode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engine.config import EngineConfig, Kernels, SamplingParams
from engine.engine import Engine
from engine.errors import ModelLoadError
from engine.kernel_check import VERDICT_FILE, build_identity, kernel_verdict, llama_system_info, probe_command

SEGFAULT = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]
HELLO = [{"role": "user", "content": "Hello there"}]


def crash_when(*crashing: Kernels):
    """A probe command: the real probe, except for the kernels that 'crash'."""
    calls: list[Kernels] = []

    def command(kernels: Kernels) -> list[str]:
        calls.append(kernels)
        return SEGFAULT if kernels in crashing else probe_command(kernels)

    command.calls = calls
    return command


def test_the_installed_build_has_no_amx_kernels_but_keeps_repacking():
    info = llama_system_info()
    assert "AMX_INT8 = 1" not in info  # the path that segfaults on these models
    assert "REPACK = 1" in info  # the fast repacked Q4_0 kernels stay


def test_the_real_probe_finds_the_fast_kernels_work_here(tmp_path):
    verdict = kernel_verdict(tmp_path)
    assert verdict.kernels is Kernels.FAST and verdict.reason == ""
    saved = json.loads((tmp_path / VERDICT_FILE).read_text(encoding="utf-8"))
    assert saved[build_identity()]["kernels"] == "fast"


def test_a_crashing_fast_probe_falls_back_to_safe_kernels_once(tmp_path, tiny_model_path):
    command = crash_when(Kernels.FAST)
    verdict = kernel_verdict(tmp_path, command=command)
    assert verdict.kernels is Kernels.SAFE
    assert "SIGSEGV" in verdict.reason and "safe kernels" in verdict.reason
    assert command.calls == [Kernels.FAST, Kernels.SAFE]

    again = crash_when(Kernels.FAST, Kernels.SAFE)
    assert kernel_verdict(tmp_path, command=again) == verdict  # remembered: no second probe
    assert again.calls == []

    # The engine reads the same verdict and runs on the plain kernels: no repacking, the
    # weights stay pages of the file, and it answers.
    with Engine(tiny_model_path, EngineConfig(n_ctx=512, kernel_check_dir=tmp_path)) as engine:
        assert engine.kernels is Kernels.SAFE and not engine.repacked
        assert "SIGSEGV" in engine.kernel_note
        assert engine.memory_report().model_file_backed
        result = engine.chat(HELLO, SamplingParams(temperature=0.0, max_tokens=4))
    assert result.stats.tokens_out == 4


def test_when_every_kernel_crashes_loading_is_refused_with_a_reason(tmp_path, tiny_model_path):
    kernel_verdict(tmp_path, command=crash_when(Kernels.FAST, Kernels.SAFE))
    with pytest.raises(ModelLoadError, match="cannot run on this processor.*SIGSEGV"):
        Engine(tiny_model_path, EngineConfig(n_ctx=512, kernel_check_dir=tmp_path))


def test_a_damaged_verdict_file_is_ignored_and_probed_again(tmp_path: Path):
    (tmp_path / VERDICT_FILE).write_text("{not json", encoding="utf-8")
    command = crash_when()
    assert kernel_verdict(tmp_path, command=command).kernels is Kernels.FAST
    assert command.calls == [Kernels.FAST]
    assert json.loads((tmp_path / VERDICT_FILE).read_text(encoding="utf-8"))[build_identity()]["kernels"] == "fast"


def test_the_fast_kernels_repack_in_memory(tiny_model_path):
    with Engine(tiny_model_path, EngineConfig(n_ctx=512, kernels=Kernels.FAST)) as engine:
        assert engine.repacked and engine.kernel_note == ""
        assert not engine.memory_report().model_file_backed
