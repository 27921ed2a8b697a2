"""The choices an engine is loaded with and a chat is sampled with."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psutil

from engine.errors import EngineError
from engine.experts.cache import CachePolicy
from engine.experts.io import ReadMethod


class ConfigError(EngineError, ValueError):
    """A setting is outside what the engine can do."""


class MemoryMode(StrEnum):
    AUTO = "auto"  # in memory when the model fits the budget, else file-backed
    IN_MEMORY = "in-memory"  # weights repacked into RAM: fastest, RSS ~1.1x the file
    FILE_BACKED = "file-backed"  # mmap, not repacked: pages can be evicted and re-read


class Kernels(StrEnum):
    """Which of llama.cpp's CPU kernels run the weights (see engine/kernel_check.py)."""

    AUTO = "auto"  # try the fast ones in a child process once per build and CPU, else safe
    FAST = "fast"  # weights repacked into llama.cpp's extra buffer types (1.2-1.5x decode)
    SAFE = "safe"  # no extra buffer types: plain kernels on the weights as the file has them


class KvType(StrEnum):
    F16 = "f16"
    Q8_0 = "q8_0"


class FlashAttention(StrEnum):
    """llama.cpp's flash-attention kernels; one choice per context, since the V cache's
    layout depends on it (llama-kv-cache.cpp: `v_trans = !flash_attn`)."""

    AUTO = "auto"  # the measured choice: see EngineConfig.flash_attention_on
    ON = "on"
    OFF = "off"


def default_threads() -> int:
    """Physical cores are what llama.cpp scales with; hyper-threads slow it down."""
    # psutil answers None where it cannot read the topology.
    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)


@dataclass(frozen=True)
class EngineConfig:
    n_threads: int = 0  # 0: default_threads()
    n_ctx: int = 4096
    n_batch: int = 512
    memory_mode: MemoryMode = MemoryMode.AUTO
    memory_budget_bytes: int | None = None  # None: what the machine has available
    kv_type: KvType = KvType.F16
    flash_attention: FlashAttention = FlashAttention.AUTO
    # Sliding-window layers keep the whole context too (llama.cpp's swa_full): only for
    # measuring what the window-bounded cache saves; the app never sets it.
    full_window_cache: bool = False
    # conversation caches kept besides the active one (see ConversationCacheStore)
    saved_conversations: int = 4
    saved_conversation_bytes: int = 1 << 30
    conversation_cache_dir: Path | None = None  # also keep them on disk when set
    # File-backed with a budget smaller than the model: resident model bytes allowed
    # (None: the memory budget minus the KV cache), whether experts are read ahead, and
    # which ones stay (see engine/experts/cache.py).
    expert_budget_bytes: int | None = None
    expert_prefetch: bool = True
    expert_policy: CachePolicy = CachePolicy.LFU
    expert_lookahead: int | None = None  # later layers read ahead; None: the measured default
    expert_read_method: ReadMethod | None = None  # None: the measured default
    # Where each model's expert usage is kept between sessions, to start the cache warm
    # (see engine/experts/history.py); None: every session starts cold.
    expert_history_dir: Path | None = None
    kernels: Kernels = Kernels.AUTO
    # Where the verdict of the kernel check is kept per build and CPU, and which model files
    # passed their trial load (engine/model_trial.py); None: for this process only.
    kernel_check_dir: Path | None = None
    # Read a model file in a child process before its first load here, so that a llama.cpp
    # crash on it cannot take the app down. Off only for files the app wrote itself.
    trial_load: bool = True

    def check(self) -> None:
        if self.n_threads < 0:
            raise ConfigError("threads must be 0 (automatic) or more")
        if not 256 <= self.n_ctx <= 1 << 20:
            raise ConfigError(f"context length {self.n_ctx} is outside 256 .. 1,048,576 tokens")
        if self.n_batch < 1:
            raise ConfigError("batch size must be at least 1")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes <= 0:
            raise ConfigError("the memory budget must be positive")
        if self.expert_budget_bytes is not None and self.expert_budget_bytes <= 0:
            raise ConfigError("the expert budget must be positive")
        if self.expert_lookahead is not None and self.expert_lookahead < 0:
            raise ConfigError("the expert lookahead must be 0 (off) or more layers")
        if self.kv_type is not KvType.F16 and self.flash_attention is FlashAttention.OFF:
            raise ConfigError("a q8_0 KV cache needs flash attention (llama.cpp cannot store V quantised without it)")

    @property
    def threads(self) -> int:
        return self.n_threads or default_threads()

    @property
    def flash_attention_on(self) -> bool:
        """AUTO: on only where the KV cache's type requires it.

        Measured on the 4B shape (bench/context.py, README "Speed as the conversation grows"):
        with an f16 cache, flash attention decodes slower and slower as the context grows,
        while it saves little prefill, and in a chat the conversation cache makes decode most
        of what a user waits for. llama.cpp's own AUTO turns it on for the CPU.
        """
        if self.flash_attention is FlashAttention.AUTO:
            return self.kv_type is not KvType.F16
        return self.flash_attention is FlashAttention.ON

    @property
    def batch(self) -> int:
        """Tokens evaluated per llama.cpp call; never more than the context holds."""
        return min(self.n_batch, self.n_ctx)


@dataclass(frozen=True)
class SamplingParams:
    """SmallThinker's recommended sampling; temperature 0 means greedy."""

    temperature: float = 0.6
    top_k: int = 20
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int | None = None  # None: a new random seed per answer

    def check(self) -> None:
        if self.temperature < 0:
            raise ConfigError("temperature cannot be negative")
        if self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("top-k must be >= 0 and top-p in (0, 1]")
        if self.max_tokens < 1:
            raise ConfigError("max tokens must be at least 1")
