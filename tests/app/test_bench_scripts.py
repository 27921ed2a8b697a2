"""The benchmarks keep working: each runs on the tiny model and ends with its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_engine_benchmark_runs_and_ends_with_its_figures(tiny_model_path):
    done = subprocess.run(
        [sys.executable, "-m", "ui", "bench", "engine", "--model", str(tiny_model_path), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("decode_ratio", "prefill_ratio", "rss_over_file", "ttft_turn10_over_turn1"):
        assert figures[key] > 0
    assert figures["ours_decode_tps"] > 0 and figures["reference_decode_tps"] > 0
    assert figures["ours_safe_decode_tps"] > 0 and figures["safe_kernels_decode_ratio"] > 0
    machine = figures["machine"]
    assert machine["cpu"] and "REPACK = 1" in machine["llama_build"]
    assert isinstance(machine["cpu_has_amx"], bool) and "AMX_INT8 = 1" not in machine["llama_build"]


def _bench(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "ui", "bench", *args], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_memory_budget_benchmark_runs_on_a_small_model(small_moe_model_path):
    figures = _bench(
        "memory", "--model", str(small_moe_model_path), "--budgets", "0.009", "--tokens", "12", "--repeats", "2"
    )
    for key in (
        "speed_0.009gib_over_no_manager",
        "hit_rate_over_static_oracle",
        "first_session_hit_rate_over_static_oracle",
        "hit_rate_over_belady",
        "fraction_of_bound_0.009gib",
        "fraction_of_plain_bound_0.009gib",
        "fraction_of_run_start_bound_0.009gib",
        "fraction_of_attainable_bound_0.009gib",
        "lookahead_speedup_0.009gib",
        "disk_probe_gbps_0.009gib",
    ):
        assert figures[key] > 0
    # The whole device's activity while ours decoded (a tiny model may be read from the page cache).
    assert figures["disk_busy_fraction_0.009gib"] >= 0 and figures["disk_read_gbps_in_decode_0.009gib"] >= 0

    def runs(setup, budget=0.009):
        return [c for c in figures["cells"] if c["setup"] == setup and c["budget_gib"] == budget]

    # Ours with and without lookahead, and the bound's nothing-evicted cell, ran twice, in turn.
    assert [c["repeat"] for c in runs("ours")] == [0, 1] and len(runs("ours_no_lookahead")) == 2
    assert len(runs("ours_nothing_evicted", None)) == 2 and len(runs("ours_no_prefetch")) == 1
    speedups = [a["decode_tps"] / b["decode_tps"] for a, b in zip(runs("ours"), runs("ours_no_lookahead"), strict=True)]
    assert figures["lookahead_speedup_0.009gib_by_repeat"] == pytest.approx(speedups)
    assert figures["lookahead_speedup_0.009gib"] == pytest.approx(sum(speedups) / 2)  # their median
    by_repeat = figures["fraction_of_bound_0.009gib_by_repeat"]
    assert len(by_repeat) == 2 and figures["fraction_of_bound_0.009gib"] == pytest.approx(sum(by_repeat) / 2)
    # The figures of one run stand for a set-up: the run with the median (here the lower) speed.
    ours = min(runs("ours"), key=lambda c: c["decode_tps"])
    assert ours["history_seeded"]  # an earlier session's expert usage started the cache
    # The disk's speed probed right before and after each run: its bound's read time comes from these.
    assert all(len(c["disk_probe_gbps"]) == 2 for c in runs("ours"))
    assert figures["disk_probe_gbps_0.009gib"] == pytest.approx(
        sum(sum(c["disk_probe_gbps"]) for c in runs("ours")) / 4
    )
    # Each run is held against its own bound (its misses at its probes' speed, or the compute).
    ours_bps = sum(ours["disk_probe_gbps"]) / 2 * 1e9
    bound_s = max(figures["compute_ms_per_token"] / 1e3, ours["miss_bytes_per_token"] / ours_bps)
    assert bound_s * ours["decode_tps"] in [pytest.approx(f) for f in by_repeat]
    # Reading the misses takes the disk's time at the cell's probes (the run's first probe kept beside).
    assert figures["miss_read_ms_per_token"] == pytest.approx(
        ours["miss_bytes_per_token"] / (figures["disk_probe_gbps_0.009gib"] * 1e9) * 1e3
    )
    assert figures["run_start_miss_read_ms_per_token"] == pytest.approx(
        ours["miss_bytes_per_token"] / (figures["expert_read_gbps"] * 1e9) * 1e3
    )
    # The overlap itself: the share of each run's miss read time llama.cpp did not wait for.
    hidden = figures["reads_hidden_fraction_0.009gib_by_repeat"]
    read_ms = ours["miss_bytes_per_token"] / ours_bps * 1e3
    assert 1 - ours["wait_ms_per_token"] / read_ms in [pytest.approx(h) for h in hidden]
    assert figures["reads_hidden_fraction_0.009gib"] == pytest.approx(sum(hidden) / 2)
    # Against what this design can reach: every byte it read at the probed speed, plus each
    # token's time after its last layer's input (no read of the next token is known before it).
    share = ours["guessed_token_share"]
    arms = ((share, ours["guessed_ms_per_token"]), (1 - share, ours["unguessed_ms_per_token"]))
    tail_s = 1 / ours["decode_tps"] - sum(w * ms for w, ms in arms if w) / 1e3
    assert 0 < tail_s < 1 / ours["decode_tps"]
    compute_s = figures["compute_ms_per_token"] / 1e3
    attainable_s = max(compute_s, tail_s + ours["prefetched_bytes_per_token"] / ours_bps)
    reachable = figures["fraction_of_attainable_bound_0.009gib_by_repeat"]
    assert attainable_s * ours["decode_tps"] in [pytest.approx(f) for f in reachable]
    # The most the figures could be, were ours as fast as that: its bound over the
    # attainable one, and the pair's run without lookahead against it.
    ceilings = figures["fraction_of_bound_ceiling_0.009gib_by_repeat"]
    assert bound_s / attainable_s in [pytest.approx(f) for f in ceilings] and all(0 < f <= 1 for f in ceilings)
    assert figures["fraction_of_bound_ceiling_0.009gib"] == pytest.approx(sum(ceilings) / 2)
    (pair,) = [r for r in runs("ours_no_lookahead") if r["repeat"] == ours["repeat"]]
    lookahead_ceilings = figures["lookahead_speedup_ceiling_0.009gib_by_repeat"]
    assert 1 / pair["decode_tps"] / attainable_s in [pytest.approx(f) for f in lookahead_ceilings]
    assert figures["disk_gbps"] > 0
    setups = {"ours", "ours_no_lookahead", "ours_no_prefetch", "no_manager", "ours_nothing_evicted"}
    assert {c["setup"] for c in figures["cells"]} == setups
    # The bound's compute: ours (the manager at work) within a budget just under the file, from
    # which plain llama.cpp's stands in where the cache could not hold every expert (this tiny model).
    everything = next(c for c in figures["cells"] if c["setup"] == "ours_nothing_evicted")
    assert everything["capacity_experts"] > ours["capacity_experts"]
    holds_all = everything["capacity_experts"] >= everything["n_experts"]
    source = min(runs(figures["bound_compute_from"], None), key=lambda c: c["decode_tps"])  # (the median of two)
    assert (figures["bound_compute_from"] == "ours_nothing_evicted") == holds_all
    assert figures["compute_ms_per_token"] == pytest.approx(1e3 / source["decode_tps"])
    assert 0 <= figures["wasted_read_fraction"] < 1
    # Whether ours guessed, token by token (engine/experts/guess_choice.py); without lookahead never.
    assert figures["guessed_token_share_0.009gib"] == ours["guessed_token_share"]
    assert all(c["guessed_token_share"] == 0 and c["guessed_ms_per_token"] is None for c in runs("ours_no_lookahead"))
    assert figures["guess_arm_speedup_0.009gib"] == pytest.approx(
        ours["unguessed_ms_per_token"] / ours["guessed_ms_per_token"]
    )
    assert figures["read_methods"]["willneed_gbps"] > 0 and figures["read_methods"]["direct_gbps"] > 0
    # Direct reads with 1, 2, 4, 8 and 16 in flight, each depth its own experts.
    assert list(figures["read_methods"]["direct_gbps_by_depth"]) == ["1", "2", "4", "8", "16"]
    assert all(gbps > 0 for gbps in figures["read_methods"]["direct_gbps_by_depth"].values())
    # /proc/stat counts CPU in 10 ms ticks: a tiny model's reads can honestly cost 0 of them
    assert figures["read_methods"]["pread_cpu_s_per_gb"] >= 0
    assert all(c.get("prediction_mismatches", 0) == 0 for c in figures["cells"])
    assert figures["machine"]["cpu"] and "REPACK = 1" in figures["machine"]["llama_build"]


def test_summarize_benchmark_reports_pages_per_minute(tiny_model_path):
    figures = _bench("summarize", "--model", str(tiny_model_path), "--pages", "6", "--context", "768")
    assert figures["pages"] == 6 and figures["pages_per_minute"] > 0 and figures["sections"] >= 1
    assert figures["ideal_over_actual"] > 0
    assert figures["machine"]["cpu"]


def test_context_benchmark_compares_lengths_and_the_window_cache(tiny_model_path, tiny_swa_model_path):
    figures = _bench(
        "context",
        "--model",
        str(tiny_model_path),
        "--model-21b",
        str(tiny_swa_model_path),
        "--lengths",
        "100,600",
    )
    assert set(figures["decode_ratio"]) == set(figures["prefill_ratio"]) == {"100", "600"}
    assert figures["min_decode_ratio"] == min(figures["decode_ratio"].values()) > 0
    assert figures["min_prefill_ratio"] == min(figures["prefill_ratio"].values()) > 0
    ours = figures["results_4b"]["ours"]["600"]
    assert ours["tokens_out"] == 48 and ours["flash_attention"] is False and len(ours["decode_samples"]) == 3
    # the window-bounded cache against swa_full at 16K: 3 of 4 layers keep 4096 + 512 cells, not 16K
    assert figures["kv_bytes_21b_window"] < figures["kv_bytes_21b_swa_full"]
    assert figures["kv_saving_21b"] > 0.5 and figures["decode_ratio_21b_window_over_swa_full"] > 0


def test_server_benchmark_compares_ours_with_llama_cpp_python_s_server(tiny_model_path):
    figures = _bench("server", "--model", str(tiny_model_path), "--requests", "4", "--clients", "2")
    for side in ("ours", "theirs"):
        assert figures[side]["requests"] == 4 and figures[side]["ttft_median_s"] > 0
    assert figures["throughput_ratio"] > 0 and figures["ttft_speedup"] > 0


def test_the_prediction_benchmark_predicts_and_measures_on_a_small_model(small_moe_model_path):
    figures = _bench("predict", "--shape", "small-moe", "--model", str(small_moe_model_path), "--tokens", "16")
    row = figures["rows"][0]
    assert row["budget_gib"] == 0.009 and row["measured_tps"] > 0 and row["predicted_tps"] > 0
    assert figures["max_prediction_error"] == abs(row["error"]) and figures["disk_gbps"] > 0
    assert 0 < row["predicted_hit_rate"] <= 1 and 0 < row["measured_hit_rate"] <= 1
    assert figures["usage_source"] and figures["machine"]["cpu"]


def test_the_willneed_probe_reads_what_the_kernel_dropped_instead_of_waiting_forever(tmp_path, monkeypatch):
    import mmap
    import os

    import numpy as np

    from bench import read_methods
    from engine.experts.page_control import PAGE, residency

    path = tmp_path / "file"
    path.write_bytes(os.urandom(64 * PAGE))
    fd = os.open(path, os.O_RDONLY)
    mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    try:
        base = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
        os.fdatasync(fd)  # (dirty pages cannot be dropped)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        ranges = [(0, 8 * PAGE), (32 * PAGE, 8 * PAGE)]
        if residency(base, base + 40 * PAGE).any():
            pytest.skip("this filesystem keeps the file in RAM whatever we advise")
        monkeypatch.setattr(read_methods, "WILLNEED_PATIENCE_S", 0.05)
        monkeypatch.setattr(os, "posix_fadvise", lambda *args: None)  # a readahead the kernel dropped
        assert read_methods.read_willneed(fd, ranges, base) == 2
        assert all(residency(base + offset, base + offset + n).all() for offset, n in ranges)
    finally:
        mapped.close()
        os.close(fd)


def test_the_page_table_benchmark_times_moves_alone_and_beside_a_computing_thread():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "page_table_moves.py"), "--moves", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["move_us_alone"] > 0 and figures["move_us_beside_compute"] > 0
    assert figures["ratio"] == pytest.approx(figures["move_us_beside_compute"] / figures["move_us_alone"], rel=0.01)
    assert figures["cpu"] and "cpu_has_amx" in figures
