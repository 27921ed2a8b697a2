"""Predicted tokens/s of a model at a memory budget, from the machine's measured figures.

At a budget the model does not fit, the engine keeps the fixed weights and as many whole
experts as fit (engine/experts/footprint.py); each token's other experts are read from
disk. The prediction replays a usage trace (app/speed/trace.py) through the engine's own
cache class and policy, seeded the way the engine seeds it, and takes the hit rate of the
decoded tokens. Then:

    seconds per token = compute within a budget, nothing evicted
                        + missed bytes x ENGINE_READ_FACTOR x (1 / disk speed + read CPU per byte)

Measured with bench/predict.py on an Intel Xeon (2 cores, 2026-12-03, once the engine read with
O_DIRECT where misses are many and guessed ahead only there), in two runs (128 tokens a cell
on the synthetic 4B, 96 on the 21B), the time per token rose by 0.43/0.75x the probe's cost per
missed byte (its disk time plus its read CPU) on the 4B at 1 GiB, 0.59/0.98x at 1.5 GiB,
0.79/1.2x at 2 GiB and 0.44/0.27x on the 21B at 8 GiB: the probe's WILLNEED reads cost more CPU
than the engine's direct ones and the reads now overlap the compute more, and the disk (and the
probe of it) moved between the runs. ENGINE_READ_FACTOR is 0.6, the single factor with the
smallest worst error over those eight rows (19%: the 4B at 1.5 GiB predicted fast in the second
run, the 21B 16% slow; 0.5 would put the first at 25%, 1.5, the factor before, the 4B 34-51%
slow in the first run). Earlier, on a 2-core
EPYC with WILLNEED reads everywhere, the rise was 0.95-0.99x on the 4B and 1.69x on the 21B
(factor 1.5); with reads queued for an I/O thread that had to wait for a core, 2.1. The disk
varies by 2x within minutes on these machines, so a single run's probe can be off by as much.
Where reads could run on idle cores (more cores than compute threads) this overstates the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.speed.measurements import MachineSpeed
from app.speed.profiles import ModelProfile
from app.speed.trace import sample_trace
from engine.experts.cache import CachePolicy
from engine.experts.history import PRIOR_TOKENS
from engine.experts.replay import replay_hit_rate
from engine.memory_plan import HEADROOM_BYTES

GIB = 1 << 30
ENGINE_READ_FACTOR = 0.6
# Tokens replayed: the first warm the cache (as a prompt does), the rest are scored.
WARM_TOKENS, SCORED_TOKENS = 16, 64  # hit rates within 0.005 of 32 + 160 tokens'


@dataclass(frozen=True)
class Prediction:
    budget_bytes: int  # the model's whole budget: weights and KV cache
    tokens_per_s: float | None  # None: the model does not run at this budget
    experts_resident: float  # share of the model's experts held in memory
    hit_rate: float
    miss_bytes_per_token: float
    in_memory: bool
    compute_s: float = 0.0
    read_cpu_s: float = 0.0
    disk_s: float = 0.0

    @property
    def runs(self) -> bool:
        return self.tokens_per_s is not None


def in_memory_need(profile: ModelProfile) -> int:
    """The budget at which the engine holds the model in memory (engine/memory_plan.py's rule)."""
    return profile.file_bytes + profile.kv_bytes + HEADROOM_BYTES


def replayed_hit_rate(profile: ModelProfile, capacity: int, seed: int = 0) -> float:
    fp = profile.footprint
    trace = sample_trace(profile.shares, fp.n_expert_used, WARM_TOKENS + SCORED_TOKENS, seed)
    # As the engine does with a history: the cache's counts start as PRIOR_TOKENS tokens' worth.
    seed_uses = (profile.shares / profile.shares.sum() * PRIOR_TOKENS * fp.n_layer * fp.n_expert_used).ravel()
    return replay_hit_rate(
        trace,
        fp.n_keys,
        capacity,
        CachePolicy.LFU,
        scored_from=WARM_TOKENS * fp.n_layer,
        seed_uses=seed_uses,
        layer_size=fp.n_expert,  # the engine's cache knows the layers (engine/experts/manager.py)
        used_per_layer=fp.n_expert_used,
    )


def predict_weights(profile: ModelProfile, machine: MachineSpeed, weights_budget: int, seed: int = 0) -> Prediction:
    """At a budget for the weights alone (the engine's expert budget)."""
    fp = profile.footprint
    compute = machine.compute_s_per_token(profile.model_id, fp, in_memory=False)
    if weights_budget < fp.minimum_budget:
        return Prediction(weights_budget, None, 0.0, 0.0, 0.0, False)
    capacity = min(fp.capacity(weights_budget), fp.n_keys)
    hit = replayed_hit_rate(profile, capacity, seed) if capacity < fp.n_keys else 1.0
    miss_bytes = (1 - hit) * fp.n_layer * fp.n_expert_used * fp.expert_bytes
    read_cpu = miss_bytes / 1e9 * machine.read_cpu_s_per_gb * ENGINE_READ_FACTOR
    disk = miss_bytes / (machine.disk_gbps * 1e9) * ENGINE_READ_FACTOR
    seconds = compute + read_cpu + disk
    return Prediction(
        weights_budget, 1 / seconds, capacity / fp.n_keys, hit, miss_bytes, False, compute, read_cpu, disk
    )


def predict(profile: ModelProfile, machine: MachineSpeed, budget_bytes: int, seed: int = 0) -> Prediction:
    """At a budget for the whole model (weights and KV cache), as the settings slider sets it."""
    if in_memory_need(profile) <= budget_bytes:
        compute = machine.compute_s_per_token(profile.model_id, profile.footprint, in_memory=True)
        return Prediction(budget_bytes, 1 / compute, 1.0, 1.0, 0.0, True, compute)
    weights = predict_weights(profile, machine, budget_bytes - profile.kv_bytes, seed)
    return Prediction(**{**weights.__dict__, "budget_bytes": budget_bytes})


def budget_steps(total_ram_bytes: int) -> list[int]:
    """The budgets the slider stops at: half GiB steps where they matter most, then wider."""
    steps = [x / 2 for x in range(2, 8)] + list(range(4, 8)) + list(range(8, 16, 2)) + list(range(16, 257, 4))
    return [int(s * GIB) for s in steps if s * GIB <= total_ram_bytes]
