"""Predicted tokens/s of a model at a memory budget, from the machine's measured figures.

At a budget the model does not fit, the engine keeps the fixed weights and as many whole
experts as fit (engine/experts/footprint.py); each token's other experts are read from
disk. The prediction replays a usage trace (app/speed/trace.py) through the engine's own
cache class and policy, seeded the way the engine seeds it, and takes the hit rate of the
decoded tokens. Then:

    seconds per token = compute within a budget, nothing evicted
                        + missed bytes x ENGINE_READ_FACTOR x (1 / disk speed + read CPU per byte)

Measured with bench/predict.py (a 2-core EPYC, after the router hook began issuing the reads
itself), the time per token rose by 0.95-0.99x the probe's cost per missed byte (its disk time
plus its read CPU) on the synthetic 4B at 1, 1.5 and 2 GiB, and by 1.69x on the 21B at 8 GiB
(its evictions, 3.3 MB each, took 293 ms of CPU a token; and the disk, probed at 2.1 GB/s that
run, varies by 2x within minutes on these machines). On 2 cores the reads' CPU and the compute
add up rather than overlap. ENGINE_READ_FACTOR is 1.5, the single factor with the smallest
worst error over those four rows (4B at 1 GiB 27% slow, 21B 26% fast with its replayed hit
rate; 1.0 would put the 21B 53% fast, and a recommendation of the 21B too slow to use is the
worse mistake). Before that change, with reads queued for an I/O thread that had to wait for
a core, it was 2.1. Where reads could run on idle cores (more cores than compute threads)
this overstates the cost.
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
ENGINE_READ_FACTOR = 1.5
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
        trace, fp.n_keys, capacity, CachePolicy.LFU, scored_from=WARM_TOKENS * fp.n_layer, seed_uses=seed_uses
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
