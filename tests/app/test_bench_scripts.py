"""The benchmarks keep working: each runs on the tiny model and ends with its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
