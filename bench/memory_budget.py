"""Decode speed and resident model bytes under a memory budget, three set-ups side by side.

On a synthetic model of the real shape with a skewed router (a quarter of the experts
made hot, as the paper measured), for each budget:
- ours: the expert manager (LFU cache) with prefetch, its read method (direct or WILLNEED)
  and lookahead (the next layers' experts guessed and read ahead) as it chooses for the
  budget (both where its usage history expects many misses);
- ours, no lookahead: the same, each layer's misses read only once its own experts are known;
- ours, no prefetch: the same cache, misses read by page faults when llama.cpp gets there;
- no manager: plain mmap, the budget kept by a simple evictor that pages out the experts
  loaded longest ago (FIFO), no prefetch.
"unlimited" is what the app does when the model fits: in memory, repacked ("ours"), and
plain mmap with nothing evicted ("no manager", which is also the compute time of the
kernels the budgeted runs use). "ours, nothing evicted" is ours within a budget just under
the file, where the cache holds every expert (on the 4B and 21B shapes): the same engine
configuration as ours (router hook, lookahead, file-backed experts) when nothing is evicted.

The bound of a budget, per token, is max(compute, miss bytes / the disk's expert-sized read
speed of this run); the fraction of the bound is that over the measured time per token. The
disk's speed is probed right before and right after each budget's cell of ours (direct reads
of random experts, all in flight at once: the disk's best) and the bound takes their mean: a
shared virtual disk's speed drifts (0.6 to 1.2 GB/s within an hour here), so the run's first
probe, half an hour before a cell, can be far off (`fraction_of_run_start_bound_*` keeps that
figure). Beside the bound, how busy the disk was while ours decoded (`disk_busy_fraction_*`,
the device's time with a request in flight, and the GB/s it delivered) says directly whether
the reads kept it working, and the share of the misses' read time (at the probed speed) that
llama.cpp did not wait for (`reads_hidden_fraction_*`) measures the overlap alone. As
issue 19 defines it, compute is the same configuration's with nothing evicted, so the
fraction measures how well reads hide behind compute (`fraction_of_bound_*`); against plain
llama.cpp's compute (`fraction_of_plain_bound_*`) the manager's own per-layer work counts
too.

That bound assumes a token's reads can overlap all of its compute. They cannot: the next
token's experts are known only from its own layer 0's input, so nothing is read from the last
layer's input to the next token's first (the last layer, the output matrix, sampling: its
`tail_ms_per_token`, the time per token less the manager's timing from layer 0 to the last
layer). The bound this design can reach (`attainable_bound_ms_per_token`) is max(compute,
tail + every byte it read, wasted guesses too, at the probed speed), and
`fraction_of_attainable_bound_*` holds each run of ours against its own. Where that bound is
above the issue's, the issue's fraction cannot reach 1: `fraction_of_bound_ceiling_*` is the
most it could be (each run's bound over its attainable one), and `lookahead_speedup_ceiling_*`
the most the lookahead could gain (the run without it against its pair's attainable bound).

Our cache starts from the expert usage history an earlier session left (as the app does
from its second session with a model on): a first session with another prompt and
sampling seed runs before the cells, and every cell of ours starts from a copy of its
history (so no cell learns from another's run of the same text). The hit rate a first
session would have had, starting cold, is replayed from the same trace and reported too.

Ours, ours without lookahead and the nothing-evicted cell (the bound's compute) are run
`--repeats` times (3), interleaved, their order alternating: the figures comparing ours with
itself differ by 5-15% where single runs of one build on a shared virtual machine swing
10-15%. A set-up's figures are those of its median run; the lookahead speedup is the median
of the ratios within each repeat's pair (run one right after the other), and the fraction of
the bound the median of each run of ours against its own bound (its probes, its misses).

Each cell runs in a child process, starting with the file dropped from the page cache.
Cells decode 512 tokens: the best static choice is picked with hindsight on the very
tokens it is scored on, and on a short trace that hindsight is worth a lot where many
experts are about equally popular. On the skewed 4B at 1 GiB, the static set picked from
a whole other 512-token session scored 0.955x of the in-sample one over 256 tokens; over
512 tokens the in-sample figure falls from 0.613 to 0.608 while an online cache's rises.
Decoding samples (seeded, temperature 0.6) so tokens vary as in a chat; greedy decoding of
a random model falls into loops that would flatter every cache. The figures of our
prefetch cell's trace are also replayed through other policies, the best static choice
(the most used experts of the trace kept for good) and Belady's offline optimum.

    python bench/memory_budget.py [--shape 4b|21b] [--model FILE] [--tokens 512]
    (or: smallthinker bench memory ...)

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: `engine` must be the package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np  # noqa: E402

from bench import read_methods  # noqa: E402
from bench.engine import peak_rss_bytes  # noqa: E402
from bench.machine import describe, machine_figures  # noqa: E402
from engine.config import EngineConfig, MemoryMode, SamplingParams  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.experts.cache import CachePolicy  # noqa: E402
from engine.experts.map import expert_map  # noqa: E402
from engine.experts.replay import belady_hit_rate, replay_hit_rate, static_oracle_hit_rate  # noqa: E402
from engine.model_info import inspect_model  # noqa: E402
from engine.synthetic import RouterSkew, get_shape, write_synthetic_model  # noqa: E402

GIB = 1 << 30
BUDGETS = {"4b": [None, 2.0, 1.5, 1.0], "21b": [None, 8.0]}
SETUPS = ("ours", "ours_no_lookahead", "ours_no_prefetch", "no_manager")
NOTHING_EVICTED = "ours_nothing_evicted"  # the bound's compute
REPEATED = ("ours", "ours_no_lookahead")  # run --repeats times per budget, interleaved (NOTHING_EVICTED with the first)
N_CTX = 2048
PROMPT_TOKENS = 128
RESIDENT_EVERY = 4  # tokens between mincore samples (their time is left out of the speed)
FILLER = "The committee reviewed the annual report on regional water supply and the budget for repairs. "
# The earlier session whose expert usage our cache starts from: another text, another seed.
HISTORY_FILLER = "Rain fell over the harbour while the old ferry waited for passengers, its engine quiet. "
SEED, HISTORY_SEED = 7, 11


# --- one cell, in a child process -----------------------------------------------------------
def cell_config(setup: str, budget_gib: float | None, history_dir: Path | None = None) -> EngineConfig:
    if budget_gib is None:
        mode = MemoryMode.AUTO if setup != "no_manager" else MemoryMode.FILE_BACKED
        return EngineConfig(n_ctx=N_CTX, n_threads=2, memory_mode=mode)
    return EngineConfig(
        n_ctx=N_CTX,
        n_threads=2,
        memory_mode=MemoryMode.FILE_BACKED,
        expert_budget_bytes=int(budget_gib * GIB),
        expert_prefetch=setup in ("ours", "ours_no_lookahead", NOTHING_EVICTED),
        expert_lookahead=0 if setup == "ours_no_lookahead" else None,
        expert_policy=CachePolicy.FIFO if setup == "no_manager" else CachePolicy.LFU,
        expert_history_dir=history_dir if setup != "no_manager" else None,
    )


def run_cell(model: Path, setup: str, budget_gib: float | None, tokens: int, history_dir: Path | None) -> dict:
    """`setup` "history" is the earlier session: ours, another text, its usage saved in `history_dir`."""
    started = time.perf_counter()
    engine = Engine(model, cell_config("ours" if setup == "history" else setup, budget_gib, history_dir))
    load_s = time.perf_counter() - started
    load_peak = peak_rss_bytes()  # llama.cpp maps and reads the whole file before the manager evicts
    if engine.experts is not None:
        engine.experts.trace = []
    text = (HISTORY_FILLER if setup == "history" else FILLER) * (PROMPT_TOKENS // 8)
    prompt = engine.encode_conversation([{"role": "user", "content": text}])[-PROMPT_TOKENS:]
    seed = HISTORY_SEED if setup == "history" else SEED
    sampling = SamplingParams(temperature=0.6, top_k=20, top_p=0.95, max_tokens=tokens, seed=seed)
    resident, sampling_s, decode_from, busy_from, disk_from = [], 0.0, 0, 0.0, None
    first = last = None
    n = 0
    for _chunk in engine.stream_prompt(prompt, sampling):
        now = time.perf_counter()
        n += 1
        if first is None:
            first, busy_from = now, read_methods.machine_busy_seconds()
            disk_from = read_methods.device_counters(model)
            if engine.experts is not None:  # count the decode only; the prompt warmed the cache
                engine.experts.reset_stats()
                decode_from = len(engine.experts.trace)
        last = now
        if n % RESIDENT_EVERY == 0:
            resident.append(engine.memory_report().model_resident_bytes)
            sampling_s += time.perf_counter() - now
    machine_cpu = read_methods.machine_busy_seconds() - busy_from
    disk_to = read_methods.device_counters(model)
    result = {
        "setup": setup,
        "budget_gib": budget_gib,
        "memory_mode": engine.memory_mode.value,
        "load_s": round(load_s, 2),
        "load_peak_rss_bytes": load_peak,
        "tokens": n,
        "decode_tps": (n - 1) / (last - first - sampling_s),
        "machine_cpu_ms_per_token": machine_cpu / max(1, n - 1) * 1e3,
        "peak_resident_bytes": max(r for r in resident if r is not None) if resident[0] is not None else None,
    }
    if disk_from and disk_to:  # the whole device's, so anything else reading it counts too
        result["disk_read_gbps_in_decode"] = (disk_to[0] - disk_from[0]) / (last - first) / 1e9
        result["disk_busy_fraction_in_decode"] = (disk_to[1] - disk_from[1]) / (last - first)
    if engine.experts is not None:
        result.update(expert_figures(engine, decode_from, replays=setup == "ours"))
        if result["manager_peak_resident_bytes"]:
            result["peak_resident_bytes"] = max(result["peak_resident_bytes"], result["manager_peak_resident_bytes"])
    engine.close()
    return result


def expert_figures(engine: Engine, decode_from: int, *, replays: bool) -> dict:
    stats = engine.expert_stats()
    trace, n_keys, capacity = engine.experts.trace, engine.experts.cache.n_keys, stats.capacity_experts
    usage = np.sort(stats.usage.ravel())[::-1]
    per = max(1, stats.evaluations)
    figures = {
        "capacity_experts": capacity,
        "n_experts": n_keys,
        "hit_rate": stats.hit_rate,
        "miss_bytes_per_token": stats.bytes_read_per_token,
        "prefetched_bytes_per_token": stats.bytes_read / max(1, stats.evaluations),
        "prefetch_on_time": stats.on_time,
        "prefetch_late": stats.late,
        "lead_ms_median": stats.lead_ms_median,
        "late_ms_median": stats.late_ms_median,
        "manager_peak_resident_bytes": stats.peak_resident_bytes,
        "prediction_mismatches": stats.prediction_mismatches,
        "unpredicted_reads": stats.unpredicted_reads,  # DIRECT: read only when llama.cpp chose them (0: none late)
        "lookahead": stats.lookahead,
        "read_method": engine.experts.read_method.value,
        "expert_positions": stats.positioned,  # DIRECT reads to positions (no page-table change per read)
        "positions_populated": stats.positions_populated,
        "positions_released": stats.positions_released,
        "wait_ms_per_token": stats.wait_s / per * 1e3,
        "read_busy_ms_per_token": stats.read_busy_s / per * 1e3,
        "io_cpu_ms_per_token": stats.io_cpu_s / per * 1e3,
        "exact_reads_per_token": stats.exact_reads / per,
        "speculative_reads_per_token": stats.speculative_reads / per,
        "misses_read_ahead_per_token": stats.misses_read_ahead / per,
        "wasted_read_fraction": stats.wasted_read_fraction,
        # Decode tokens run with guesses, where the manager chooses by their measured times.
        "guessed_token_share": stats.guessed_tokens / max(1, stats.guessed_tokens + stats.unguessed_tokens),
        "guessed_ms_per_token": stats.guessed_ms_per_token,
        "unguessed_ms_per_token": stats.unguessed_ms_per_token,
        "hot_quarter_share": float(usage[: len(usage) // 4].sum() / max(1, usage.sum())),
    }
    if replays:  # once per budget
        uses, seed = engine.experts.trace_uses, engine.experts.seed_uses
        layers = {"layer_size": engine.experts.map.n_expert, "used_per_layer": engine.experts.map.n_expert_used}
        replay = {
            f"replay_{policy.value}": replay_hit_rate(
                trace, n_keys, capacity, policy, scored_from=decode_from, uses=uses, seed_uses=seed, **layers
            )
            for policy in CachePolicy
        }
        figures.update(replay)
        figures["history_seeded"] = seed is not None
        figures["first_session_hit_rate"] = replay_hit_rate(
            trace, n_keys, capacity, CachePolicy.LFU, scored_from=decode_from, uses=uses, **layers
        )
        figures["static_oracle"] = static_oracle_hit_rate(trace, n_keys, capacity, scored_from=decode_from)
        figures["belady"] = belady_hit_rate(trace, n_keys, capacity, scored_from=decode_from)
    return figures


# --- the parent: disk speed, cells, the table --------------------------------------------------
def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def disk_read_speed(path: Path, expert_bytes: int) -> dict:
    """Cold reads from the model file: sequential 8 MiB reads, and expert-sized random ones."""
    drop_from_page_cache(path)
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        buffer = bytearray(8 << 20)
        started, done = time.perf_counter(), 0
        while done < min(size, 512 << 20):
            done += os.preadv(fd, [buffer], done)
        sequential = done / (time.perf_counter() - started)
        rng = np.random.default_rng(0)
        view = memoryview(buffer)[:expert_bytes]
        offsets = rng.integers(0, size - expert_bytes, 64) // 4096 * 4096
        started = time.perf_counter()
        for offset in offsets:
            os.preadv(fd, [view], int(offset))
        random_reads = len(offsets) * expert_bytes / (time.perf_counter() - started)
    finally:
        os.close(fd)
    drop_from_page_cache(path)
    return {"disk_gbps": sequential / 1e9, "disk_random_expert_gbps": random_reads / 1e9}


def _arm_speedup(cell: dict) -> float | None:
    guessed, unguessed = cell.get("guessed_ms_per_token"), cell.get("unguessed_ms_per_token")
    return unguessed / guessed if guessed and unguessed else None


def nothing_evicted_budget_gib(model: Path) -> float:
    """A weights budget just under `model`'s size: the expert manager runs (it stays out of the
    way of a budget the file fits), and on the 4B and 21B shapes its cache holds every expert,
    since it counts only the embedding rows in use. A tiny model's cache may not (the margin
    for unswept pages is 4 MiB): `summary` then takes plain llama.cpp's compute for the bound."""
    return (inspect_model(model).file_size - (1 << 20)) / GIB


PROBE_BYTES = 512 << 20  # each probe of the disk's speed before and after a cell of ours (about a second)


def run_child(model: Path, setup: str, budget: float | None, tokens: int, history_dir: Path | None = None) -> dict:
    drop_from_page_cache(model)
    folder = str(history_dir) if history_dir else None
    cell = json.dumps({"setup": setup, "budget": budget, "tokens": tokens, "history_dir": folder})
    done = subprocess.run(
        [sys.executable, __file__, "--model", str(model), "--cell", cell], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{setup} at {budget} GiB failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(cells: list[dict], disk: dict) -> dict:
    def runs(setup, budget):
        """A set-up's runs at a budget, in the order they ran (ours and ours without lookahead,
        and the nothing-evicted cell, run `--repeats` times)."""
        return [c for c in cells if c["setup"] == setup and c["budget_gib"] == budget]

    def cell(setup, budget):
        """The run with the median speed (the lower one of an even number) stands for the set-up."""
        found = sorted(runs(setup, budget), key=lambda c: c["decode_tps"])
        return found[(len(found) - 1) // 2]

    budgets = sorted({c["budget_gib"] for c in cells if c["budget_gib"] is not None})
    low = budgets[0]
    ours, plain = cell("ours", low), cell("no_manager", low)
    unlimited, file_backed = cell("ours", None), cell("no_manager", None)
    plain_compute = 1 / file_backed["decode_tps"]  # the same kernels with every weight resident
    everything = cell(NOTHING_EVICTED, None)  # and the same configuration, if its cache held every expert
    same_config = everything.get("capacity_experts", 0) >= everything.get("n_experts", 1)
    compute = 1 / everything["decode_tps"] if same_config else plain_compute
    # The disk's speed for expert-sized reads: the fastest way measured at the run's start.
    disk_bps = disk["expert_read_gbps"] * 1e9
    over: dict[str, float] = {}
    for c in cells:
        if c["budget_gib"] is not None:  # the nothing-evicted cell is listed as unlimited
            excess = max(0.0, c["peak_resident_bytes"] / (c["budget_gib"] * GIB) - 1)
            over[c["setup"]] = max(over.get(c["setup"], 0.0), excess)

    # The disk's speed as a run of ours decoded: the mean of short direct-read probes right
    # before and after it (the run's first probe can be half an hour away, and this shared
    # virtual disk's speed drifts by a factor of two over that); the run's first probe where
    # there are none. Each run of ours is held against its own bound; the figure is their median.
    def probed_bps(c):
        return float(np.mean(c.get("disk_probe_gbps") or [disk["expert_read_gbps"]])) * 1e9

    def miss_read_s(c, bps_of):
        return c["miss_bytes_per_token"] / bps_of(c)

    def bounds(b, compute_s, bps_of):
        return [max(compute_s, miss_read_s(c, bps_of)) for c in runs("ours", b)]

    def held_to(b, run_bounds):
        """Each run of ours at budget `b` against its own bound (seconds a token)."""
        return [bound * c["decode_tps"] for bound, c in zip(run_bounds, runs("ours", b), strict=True)]

    def fractions(b, compute_s, bps_of):
        return held_to(b, bounds(b, compute_s, bps_of))

    def reads_hidden(b):
        """Per run of ours, the overlap itself: the share of its misses' read time (at the
        probed speed) that llama.cpp did not wait for. The fraction of the bound also counts
        the manager's own work on the computing thread; this does not. None: nothing missed."""
        shares = []
        for c in runs("ours", b):
            read_s = miss_read_s(c, probed_bps)
            shares.append(1 - c["wait_ms_per_token"] / 1e3 / read_s if read_s > 0 else None)
        return shares

    def median(values):
        known = [v for v in values if v is not None]
        return float(np.median(known)) if known else None

    def tail_s(c):
        """A decode token's time after its last layer's input (that layer, the output matrix,
        sampling): no read of the next token's experts can be known before its layer 0 (its
        mean time from layer 0 to the last layer, over its tokens with and without guesses)."""
        share, times = c["guessed_token_share"], (c["guessed_ms_per_token"], c["unguessed_ms_per_token"])
        window_ms = sum(w * t for w, t in zip((share, 1 - share), times, strict=True) if w and t is not None)
        return 1 / c["decode_tps"] - window_ms / 1e3

    def attainable(b, compute_s):
        """Per run of ours, the bound this design can reach: its reads (every byte, wasted
        guesses too) at the probed speed, all within the token's layers, plus its tail."""
        return [max(compute_s, tail_s(c) + c["prefetched_bytes_per_token"] / probed_bps(c)) for c in runs("ours", b)]

    bound_s = {b: bounds(b, compute, probed_bps) for b in budgets}  # the issue's, per run of ours
    fraction = {b: held_to(b, bound_s[b]) for b in budgets}
    attainable_s = {b: attainable(b, compute) for b in budgets}
    reachable = {b: held_to(b, attainable_s[b]) for b in budgets}
    # The most the fraction could be for each run of ours, were it as fast as its
    # attainable bound: its bound over its attainable one.
    ceiling = {b: [bound / most for bound, most in zip(bound_s[b], attainable_s[b], strict=True)] for b in budgets}
    hidden = {b: reads_hidden(b) for b in budgets}
    plain_fraction = {b: fractions(b, plain_compute, probed_bps) for b in budgets}
    run_start_fraction = {b: fractions(b, compute, lambda _c: disk_bps) for b in budgets}
    cell_bps = {b: float(np.mean([probed_bps(c) for c in runs("ours", b)])) for b in budgets}
    # Lookahead against none: each repeat's pair ran one right after the other (their order
    # alternating), so the ratio within a pair is spared the machine's drift between pairs.
    pairs = list(zip(runs("ours", low), runs("ours_no_lookahead", low), strict=True))
    lookahead_speedups = [a["decode_tps"] / b["decode_tps"] for a, b in pairs]
    # And the most it could be: the run without lookahead against its pair's attainable bound.
    lookahead_ceilings = [1 / b["decode_tps"] / most for (_a, b), most in zip(pairs, attainable_s[low], strict=True)]
    # Reading the lowest budget's misses at the disk's speed around its cell (and at the run's start).
    miss_read = ours["miss_bytes_per_token"] / cell_bps[low]
    run_start_miss_read = ours["miss_bytes_per_token"] / disk_bps
    result = {
        **{f"fraction_of_bound_{b:g}gib": float(np.median(fraction[b])) for b in budgets},
        **{f"fraction_of_plain_bound_{b:g}gib": float(np.median(plain_fraction[b])) for b in budgets},
        **{f"fraction_of_run_start_bound_{b:g}gib": float(np.median(run_start_fraction[b])) for b in budgets},
        **{f"fraction_of_bound_{b:g}gib_by_repeat": fraction[b] for b in budgets},
        # Against what this design can reach (reads only within the token's layers: see attainable).
        **{f"fraction_of_attainable_bound_{b:g}gib": float(np.median(reachable[b])) for b in budgets},
        **{f"fraction_of_attainable_bound_{b:g}gib_by_repeat": reachable[b] for b in budgets},
        **{f"fraction_of_bound_ceiling_{b:g}gib": float(np.median(ceiling[b])) for b in budgets},
        **{f"fraction_of_bound_ceiling_{b:g}gib_by_repeat": ceiling[b] for b in budgets},
        # Direct evidence of reads keeping the disk busy (the whole device's figures during decode).
        **{f"disk_busy_fraction_{b:g}gib": cell("ours", b).get("disk_busy_fraction_in_decode") for b in budgets},
        **{f"disk_read_gbps_in_decode_{b:g}gib": cell("ours", b).get("disk_read_gbps_in_decode") for b in budgets},
        **{f"disk_probe_gbps_{b:g}gib": cell_bps[b] / 1e9 for b in budgets},
        f"lookahead_speedup_{low:g}gib": float(np.median(lookahead_speedups)),
        f"lookahead_speedup_{low:g}gib_by_repeat": lookahead_speedups,
        f"lookahead_speedup_ceiling_{low:g}gib": float(np.median(lookahead_ceilings)),
        f"lookahead_speedup_ceiling_{low:g}gib_by_repeat": lookahead_ceilings,
        "wasted_read_fraction": ours["wasted_read_fraction"],
        # How ours chose (guess_choice.py): its share of decode tokens with guesses, and within its
        # median run the tokens without guesses' mean time over those with them.
        **{f"guessed_token_share_{b:g}gib": cell("ours", b).get("guessed_token_share") for b in budgets},
        **{f"guess_arm_speedup_{b:g}gib": _arm_speedup(cell("ours", b)) for b in budgets},
        f"speed_{low:g}gib_over_no_manager": ours["decode_tps"] / plain["decode_tps"],
        "hit_rate_over_static_oracle": ours["hit_rate"] / ours["static_oracle"],
        "first_session_hit_rate_over_static_oracle": ours["first_session_hit_rate"] / ours["static_oracle"],
        "hit_rate_over_belady": ours["hit_rate"] / ours["belady"],
        **{f"reads_hidden_fraction_{b:g}gib": median(hidden[b]) for b in budgets},
        **{f"reads_hidden_fraction_{b:g}gib_by_repeat": hidden[b] for b in budgets},
        "max_over_budget": over["ours"],
        f"speed_{low:g}gib_over_unlimited": ours["decode_tps"] / unlimited["decode_tps"],
        **disk,
        "compute_ms_per_token": compute * 1e3,
        "bound_compute_from": NOTHING_EVICTED if same_config else "no_manager",
        "plain_compute_ms_per_token": plain_compute * 1e3,
        "bound_ms_per_token": {f"{b:g}": float(np.median(bound_s[b])) * 1e3 for b in budgets},
        "attainable_bound_ms_per_token": {f"{b:g}": float(np.median(attainable_s[b])) * 1e3 for b in budgets},
        "tail_ms_per_token": {f"{b:g}": float(np.median([tail_s(c) for c in runs("ours", b)])) * 1e3 for b in budgets},
        "miss_read_ms_per_token": miss_read * 1e3,
        "run_start_miss_read_ms_per_token": run_start_miss_read * 1e3,
        "max_over_budget_by_setup": over,
        "speed_over_unlimited": {
            f"{setup}@{b:g}": cell(setup, b)["decode_tps"] / unlimited["decode_tps"]
            for setup, b in dict.fromkeys((c["setup"], c["budget_gib"]) for c in cells)
            if b is not None
        },
        "cells": cells,
    }
    return result


def print_header() -> None:
    print(
        f"{'budget':>9} {'set-up':<24} {'tok/s':>7} {'peak GiB':>9} {'hit rate':>9} {'miss MB/tok':>12} "
        f"{'CPU ms/tok':>11} {'I/O CPU':>8} {'wasted':>7}"
    )


def print_table(cells: list[dict]) -> None:
    for c in cells:
        budget = "unlimited" if c["budget_gib"] is None else f"{c['budget_gib']:.3g} GiB"
        peak = f"{c['peak_resident_bytes'] / GIB:.3f}" if c["peak_resident_bytes"] else "-"
        hit = f"{c['hit_rate']:.3f}" if "hit_rate" in c else "-"
        miss = f"{c['miss_bytes_per_token'] / 1e6:.1f}" if "miss_bytes_per_token" in c else "-"
        io_cpu = f"{c['io_cpu_ms_per_token']:.1f}" if "io_cpu_ms_per_token" in c else "-"
        wasted = f"{c['wasted_read_fraction']:.3f}" if "wasted_read_fraction" in c else "-"
        repeated = c["setup"] == NOTHING_EVICTED or (c["setup"] in REPEATED and c["budget_gib"] is not None)
        setup = f"{c['setup']} #{c['repeat'] + 1}" if repeated else c["setup"]
        print(
            f"{budget:>9} {setup:<24} {c['decode_tps']:7.2f} {peak:>9} {hit:>9} {miss:>12} "
            f"{c['machine_cpu_ms_per_token']:>11.1f} {io_cpu:>8} {wasted:>7}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=[*sorted(BUDGETS), "small-moe"], default="4b")
    parser.add_argument("--model", type=Path, help="a synthetic model of that shape (default: write one)")
    parser.add_argument("--tokens", type=int, default=512, help="tokens decoded per cell")
    parser.add_argument("--budgets", help="budgets in GiB, comma-separated (default: the shape's)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of ours with and without lookahead per budget, and of the nothing-evicted cell (medians)",
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        cell = json.loads(args.cell)
        history_dir = Path(cell["history_dir"]) if cell["history_dir"] else None
        print(json.dumps(run_cell(args.model, cell["setup"], cell["budget"], cell["tokens"], history_dir)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        model = args.model
        if model is None:
            model = write_synthetic_model(get_shape(args.shape), Path(folder) / f"{args.shape}.gguf", skew=RouterSkew())
        disk = disk_read_speed(model, expert_map(inspect_model(model)).expert_bytes)
        methods = read_methods.measure(model, 300)
        disk["read_methods"] = methods
        disk["expert_read_gbps"] = max(
            [disk["disk_random_expert_gbps"]] + [methods[f"{m}_gbps"] or 0 for m in read_methods.METHODS]
        )
        print(f"disk: {disk['disk_gbps']:.2f} GB/s sequential, {disk['disk_random_expert_gbps']:.2f} GB/s expert-sized")
        for m in read_methods.METHODS:
            print("  " + read_methods.describe(methods, m))
        print("  " + read_methods.describe_depths(methods))
        budgets = [None, *map(float, args.budgets.split(","))] if args.budgets else BUDGETS[args.shape]
        history = Path(folder) / "history"
        earlier = run_child(model, "history", max(b for b in budgets if b is not None), args.tokens, history)
        print(f"earlier session (its expert usage starts our cache): {earlier['decode_tps']:.2f} tok/s")
        history.mkdir(exist_ok=True)  # none saved when no budget left room for the manager
        cells = []
        print_header()

        def run_from_history(setup: str, budget: float | None, repeat: int) -> dict:
            """A cell whose cache starts from its own copy of the earlier session's history."""
            own_copy = Path(folder) / f"history-{setup}-{budget}-{repeat}"
            shutil.copytree(history, own_copy)
            return run_child(model, setup, budget, args.tokens, own_copy)

        def run(setup: str, budget: float | None, repeat: int = 0) -> None:
            if setup == NOTHING_EVICTED:  # listed with the unlimited cells: every weight stays resident
                done = run_from_history(setup, nothing_evicted_budget_gib(model), repeat)
                cells.append({**done, "budget_gib": None, "weights_budget_gib": done["budget_gib"]})
            elif setup == "ours" and budget is not None:  # the disk's speed right before and after: its bound
                before = read_methods.direct_read_gbps(model, PROBE_BYTES, seed=len(cells))
                cells.append(run_from_history(setup, budget, repeat))
                after = read_methods.direct_read_gbps(model, PROBE_BYTES, seed=len(cells) + 1000)
                cells[-1]["disk_probe_gbps"] = [x for x in (before, after) if x is not None]
            else:
                cells.append(run_from_history(setup, budget, repeat))
            cells[-1]["repeat"] = repeat
            print_table(cells[-1:])

        first_budgeted = next(b for b in budgets if b is not None)
        for budget in budgets:
            if budget is None:  # without a budget the set-ups of ours differ in nothing: in memory, no manager
                run("ours", None)
                run("no_manager", None)
                continue
            # The figures that compare ours with itself (lookahead on and off, the nothing-evicted
            # bound) differ by 5-15% where single runs here swing 10-15%: run them interleaved,
            # their order alternating, and take medians.
            for repeat in range(args.repeats):
                compared = [*((NOTHING_EVICTED,) if budget == first_budgeted else ()), *REPEATED]
                for setup in compared if repeat % 2 == 0 else compared[::-1]:
                    run(setup, budget, repeat)
            for setup in SETUPS:
                if setup not in REPEATED:
                    run(setup, budget)
    result = summary(cells, disk)
    result["machine"] = machine_figures()
    print(describe(result["machine"]))
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key}: {value:.3f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
