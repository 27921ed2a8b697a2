"""The engine's configuration and sampling as the user's settings ask for them."""

from __future__ import annotations

from app.paths import data_dir
from app.settings import Settings
from engine.config import EngineConfig, KvType, SamplingParams

GIB = 1 << 30


def engine_config(settings: Settings, *, context_length: int | None = None) -> EngineConfig:
    budget = int(settings.memory_budget_gib * GIB) if settings.memory_budget_gib > 0 else None
    return EngineConfig(
        n_threads=settings.threads,
        n_ctx=context_length or settings.context_length,
        memory_budget_bytes=budget,
        kv_type=KvType(settings.kv_cache_type),
        expert_history_dir=data_dir() / "expert-usage",
        kernel_check_dir=data_dir(),
    )


def sampling_params(settings: Settings) -> SamplingParams:
    return SamplingParams(
        temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p, max_tokens=settings.max_tokens
    )
