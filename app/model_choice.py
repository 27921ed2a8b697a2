"""Which model to recommend for this machine, and in which mode, with a reason to show.

The rule (also in the README):
- Keep back for the OS and the app a quarter of the RAM, at least 1 GiB; the rest is usable.
- A model runs *in memory* (fastest) when its file plus its KV cache at the default
  context fit the usable RAM. Prefer the 21B when it does, else the 4B.
- Otherwise the 21B is offered in *memory-budget* mode (weights streamed from disk, hot
  experts kept) when the usable RAM is at least its minimum budget (8 GiB, the paper's
  target) and its predicted speed there (app/speed: this machine's disk and compute) is
  at least the usable speed set in the settings (5 tokens/s by default); the reason names
  the disk speed and the prediction, or why not.
- Else the 4B: in memory when it fits, else in memory-budget mode from 1 GiB.
- Below that, nothing runs well: the 4B is named, flagged as not fitting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from app.catalog import GIB, CatalogEntry, ModelCatalog
from app.hardware import HardwareProbe
from engine.experts import page_control

RESERVE_FRACTION = 0.25
RESERVE_MIN_BYTES = 1 * GIB


class RunMode(StrEnum):
    IN_MEMORY = "in-memory"
    MEMORY_BUDGET = "memory-budget"


@dataclass(frozen=True)
class Recommendation:
    model_id: str
    mode: RunMode
    budget_bytes: int | None  # for memory-budget mode
    fits: bool
    reason: str


@dataclass(frozen=True)
class BudgetSpeed:
    """What the speed prediction (app/speed) says of a model in memory-budget mode."""

    predict_tps: Callable[[str, int], float | None]  # model id, whole budget -> tokens/s (None: does not run)
    disk_source: str  # "your disk reads 3.1 GB/s"
    min_tps: float  # the slowest speed the user calls usable


def usable_ram(total_ram_bytes: int) -> int:
    return max(0, total_ram_bytes - max(RESERVE_MIN_BYTES, int(total_ram_bytes * RESERVE_FRACTION)))


def in_memory_need(entry: CatalogEntry) -> int:
    return entry.size_bytes + entry.kv_bytes()


def _gib(n: int | float) -> str:
    return f"{n / GIB:.1f} GiB"


def _large_in_budget(large: CatalogEntry, usable: int, speed: BudgetSpeed | None) -> tuple[bool, str]:
    """Whether to offer the 21B in memory-budget mode at `usable`, and the reason either way."""
    if usable < large.min_budget_gib * GIB:
        return False, f"{large.display_name} would need {_gib(in_memory_need(large))}."
    if speed is None:
        return False, f"{large.display_name} would need {_gib(in_memory_need(large))} to run in memory."
    tps = speed.predict_tps(large.id, usable)
    if tps is None:
        return False, f"{large.display_name} does not fit in {_gib(usable)}."
    said = f"{speed.disk_source}: {large.display_name} runs at about {tps:.0f} tokens/s in {_gib(usable)}"
    if tps >= speed.min_tps:
        return True, said + " (its experts are read from disk as needed), with the best answers."
    return False, f"{said}, below the {speed.min_tps:g} tokens/s set as usable."


def speed_decides(probe: HardwareProbe, catalog: ModelCatalog) -> bool:
    """Whether the recommendation depends on the speed prediction: the 21B does not fit in
    memory here but its memory-budget mode might run."""
    large, usable = catalog.get("21b"), usable_ram(probe.total_ram_bytes)
    return in_memory_need(large) > usable >= large.min_budget_gib * GIB


def recommend(probe: HardwareProbe, catalog: ModelCatalog, speed: BudgetSpeed | None = None) -> Recommendation:
    """`speed`: the prediction for memory-budget mode; without it the 21B is offered only in memory."""
    small, large = catalog.get("4b"), catalog.get("21b")
    ram, usable = probe.total_ram_bytes, usable_ram(probe.total_ram_bytes)
    head = f"This computer has {_gib(ram)} of RAM; about {_gib(usable)} can go to the model."
    disk_note = ""
    large_fits = in_memory_need(large) <= usable
    large_in_budget, large_note = (False, "") if large_fits else _large_in_budget(large, usable, speed)
    if large_fits:
        choice, mode, budget = large, RunMode.IN_MEMORY, None
        why = f"{large.display_name} fits in memory (it needs {_gib(in_memory_need(large))}): the best answers."
    elif large_in_budget:
        choice, mode, budget = large, RunMode.MEMORY_BUDGET, usable
        why = large_note
    elif in_memory_need(small) <= usable:
        choice, mode, budget = small, RunMode.IN_MEMORY, None
        why = f"{small.display_name} fits in memory ({_gib(in_memory_need(small))}) and answers quickly; {large_note}"
    elif usable >= small.min_budget_gib * GIB:
        choice, mode, budget = small, RunMode.MEMORY_BUDGET, usable
        why = (
            f"{small.display_name} fits only in memory-budget mode: its weights are read from disk as needed "
            f"within {_gib(usable)}, so answers come more slowly."
        )
    else:
        return Recommendation(
            small.id,
            RunMode.MEMORY_BUDGET,
            int(small.min_budget_gib * GIB),
            False,
            f"{head} That is less than SmallThinker needs: even {small.display_name} wants "
            f"{small.min_budget_gib:.0f} GiB beside the system. It may not run, or run very slowly.",
        )
    if probe.free_disk_bytes < choice.size_bytes:
        disk_note = f" Free disk space is {_gib(probe.free_disk_bytes)}; the download needs {_gib(choice.size_bytes)}."
    return Recommendation(choice.id, mode, budget, True, f"{head} {why}{disk_note}")


def budget_platform_note() -> str:
    """Empty where a budget below the model's size is enforced; otherwise what happens instead."""
    if page_control.SUPPORTED:
        return ""
    return (
        "On this system a budget smaller than the model is not enforced: the model is memory-mapped "
        "and the operating system decides what stays in RAM (keeping experts within a budget needs Linux)."
    )


def budget_summary(budget_bytes: int | None, catalog: ModelCatalog) -> str:
    """What a memory budget allows, for the settings slider: which model runs, and how."""
    if not budget_bytes:
        return "Automatic: the memory this computer has free when a model loads."
    parts = []
    for entry in catalog.entries:
        if in_memory_need(entry) <= budget_bytes:
            parts.append(f"{entry.display_name} runs in memory")
        elif budget_bytes >= entry.min_budget_gib * GIB:
            parts.append(f"{entry.display_name} runs in memory-budget mode (slower)")
        else:
            parts.append(f"{entry.display_name} needs at least {entry.min_budget_gib:.0f} GiB")
    return f"{_gib(budget_bytes)} for the model's weights and its KV cache: " + "; ".join(parts) + "."


# q8_0 keeps 34 bytes per block of 32 values where f16 keeps 64.
Q8_0_KV_FRACTION = 34 / 64
# What q8_0 costs against f16 at 4K tokens of context on the 4B shape, measured with
# bench/context.py (README, "Speed as the conversation grows"): it needs flash attention,
# which reads prompts and decodes slower on the CPU.
Q8_0_COST = "at 4K tokens prompts read about 2x and answers about 20% slower"


def _mib(n: int | float) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def kv_cache_summary(n_ctx: int, catalog: ModelCatalog) -> str:
    """What each KV cache type costs at a context length, for the settings dialog."""
    f16 = [(e.display_name.removeprefix("SmallThinker "), e.kv_bytes(n_ctx)) for e in catalog.entries]
    full = ", ".join(f"{_mib(size)} ({name})" for name, size in f16)
    half = ", ".join(f"{_mib(size * Q8_0_KV_FRACTION)} ({name})" for name, size in f16)
    return f"At {n_ctx:,} tokens f16 takes {full}; q8_0 {half}, but {Q8_0_COST}."
