"""How a model is held: in memory or file-backed, and the budget the expert manager keeps."""

from __future__ import annotations

import psutil

from engine.config import EngineConfig, MemoryMode
from engine.experts import page_control
from engine.model_info import ModelInfo

# Room for llama.cpp's compute buffers, the app and the OS beside weights and KV.
HEADROOM_BYTES = 768 << 20


def managed_weights_budget(info: ModelInfo, config: EngineConfig, kv_bytes: int, mode: MemoryMode) -> int | None:
    """Resident model bytes the expert manager must keep to; None when it is not needed."""
    if mode is not MemoryMode.FILE_BACKED or not page_control.SUPPORTED:
        return None
    if config.expert_budget_bytes is not None:
        budget = config.expert_budget_bytes
    elif config.memory_budget_bytes is not None:
        budget = config.memory_budget_bytes - kv_bytes
    else:
        budget = psutil.virtual_memory().available - kv_bytes - HEADROOM_BYTES
    return budget if budget < info.file_size else None


def choose_memory_mode(info: ModelInfo, config: EngineConfig, kv_bytes: int) -> MemoryMode:
    """In memory (fastest) when weights, KV cache and headroom fit the budget; else file-backed."""
    if config.memory_mode is not MemoryMode.AUTO:
        return config.memory_mode
    budget = config.memory_budget_bytes or psutil.virtual_memory().available
    need = info.file_size + kv_bytes + HEADROOM_BYTES
    return MemoryMode.IN_MEMORY if need <= budget else MemoryMode.FILE_BACKED
