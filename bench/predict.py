"""The speed prediction (app/speed) against the engine's measured speed, budget by budget.

What the app does on a user's machine, done here on a synthetic model of the real shape
with the skewed router:
1. measure the disk (the app's probe: expert-sized random reads of the model file, cold);
2. measure compute: a short answer in memory and one within a budget that holds every
   expert (the expert manager at work, nothing evicted; the app takes the first from its
   answers and scales it for the second);
3. run an earlier session at a budget, which leaves the model's expert usage history;
4. predict tokens/s at each budget from 1-3, then measure it (the cells of
   bench/memory_budget.py: a child process each, the file dropped from the page cache, the
   cache starting from that history) and print both with the error.

The prediction from the shipped prior (no history yet, as on a first run) is printed too.

    python bench/predict.py [--shape 4b|21b] [--model FILE] [--tokens 256] [--budgets 1,1.5,2]
    (or: smallthinker bench predict ...)

The last line of output is one JSON object with every figure (`max_prediction_error`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as a file: `engine` must be the package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.catalog import ModelCatalog  # noqa: E402
from app.speed.measurements import MachineSpeed, measure_disk  # noqa: E402
from app.speed.predict import predict_weights  # noqa: E402
from app.speed.profiles import model_profile  # noqa: E402
from bench.machine import describe, machine_figures  # noqa: E402
from bench.memory_budget import nothing_evicted_budget_gib, run_child  # noqa: E402
from engine.experts.footprint import ExpertFootprint  # noqa: E402
from engine.model_info import inspect_model  # noqa: E402
from engine.synthetic import RouterSkew, get_shape, write_synthetic_model  # noqa: E402

GIB = 1 << 30
BUDGETS = {"4b": [1.0, 1.5, 2.0], "21b": [8.0], "small-moe": [0.009]}
COMPUTE_TOKENS = 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(BUDGETS), default="4b")
    parser.add_argument("--model", type=Path, help="a synthetic model of that shape (default: write one)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens decoded per measured cell")
    parser.add_argument("--budgets", help="weight budgets in GiB, comma-separated (default: the shape's)")
    args = parser.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")] if args.budgets else BUDGETS[args.shape]
    catalog_id = args.shape if args.shape in ("4b", "21b") else "4b"
    entry = ModelCatalog.load().get(catalog_id)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as folder:
        model = args.model or write_synthetic_model(
            get_shape(args.shape), Path(folder) / f"{args.shape}.gguf", skew=RouterSkew()
        )
        info = inspect_model(model)
        footprint = ExpertFootprint.of_model(info)
        reads = measure_disk(Path(folder), model)
        print(f"disk: {reads.gbps:.2f} GB/s expert-sized reads, {reads.cpu_s_per_gb:.2f} s machine CPU per GB")
        tokens = min(args.tokens, COMPUTE_TOKENS)
        in_memory = run_child(model, "ours", None, tokens)
        mapped = run_child(model, "ours", nothing_evicted_budget_gib(model), tokens)
        machine = MachineSpeed().with_disk(reads)
        machine = machine.with_compute(catalog_id, footprint, in_memory["decode_tps"], in_memory=True)
        machine = machine.with_compute(catalog_id, footprint, mapped["decode_tps"], in_memory=False)
        print(f"compute: {in_memory['decode_tps']:.2f} tok/s in memory, {mapped['decode_tps']:.2f} within a budget")
        history = Path(folder) / "history"
        history.mkdir()
        earlier = run_child(model, "history", max(budgets), args.tokens, history)
        print(f"earlier session (leaves the usage history): {earlier['decode_tps']:.2f} tok/s")
        prior_profile = model_profile(entry, info)
        profile = model_profile(entry, info, history)
        print(f"usage: {profile.usage_source}")
        rows = []
        head = ("budget", "predicted", "(prior)", "measured", "error", "hit pred", "hit meas")
        print(" ".join(f"{h:>{w}}" for h, w in zip(head, (8, 10, 8, 9, 7, 9, 9), strict=True)))
        for budget in budgets:
            weights = int(budget * GIB)
            predicted = predict_weights(profile, machine, weights)
            from_prior = predict_weights(prior_profile, machine, weights)
            cell = run_child(model, "ours", budget, args.tokens, _copy(history, Path(folder) / f"h{budget}"))
            measured = cell["decode_tps"]
            error = predicted.tokens_per_s / measured - 1
            rows.append(
                {
                    "budget_gib": budget,
                    "predicted_tps": predicted.tokens_per_s,
                    "prior_predicted_tps": from_prior.tokens_per_s,
                    "measured_tps": measured,
                    "error": error,
                    "prior_error": from_prior.tokens_per_s / measured - 1,
                    "predicted_hit_rate": predicted.hit_rate,
                    "measured_hit_rate": cell["hit_rate"],
                    "predicted_miss_bytes_per_token": predicted.miss_bytes_per_token,
                    "measured_miss_bytes_per_token": cell["miss_bytes_per_token"],
                    "predicted_terms_ms": {
                        "compute": predicted.compute_s * 1e3,
                        "read_cpu": predicted.read_cpu_s * 1e3,
                        "disk": predicted.disk_s * 1e3,
                    },
                    # what ENGINE_READ_FACTOR stands for: the engine's cost per missed byte
                    # against the probe's (disk time plus read CPU)
                    "engine_read_factor": (1 / measured - 1 / mapped["decode_tps"])
                    / max(1e-9, cell["miss_bytes_per_token"] / 1e9 * (1 / reads.gbps + reads.cpu_s_per_gb)),
                    "measured_wait_ms_per_token": cell["wait_ms_per_token"],
                    "measured_io_cpu_ms_per_token": cell["io_cpu_ms_per_token"],
                    "measured_machine_cpu_ms_per_token": cell["machine_cpu_ms_per_token"],
                }
            )
            print(
                f"{budget:>6g} G {predicted.tokens_per_s:>10.2f} {from_prior.tokens_per_s:>8.2f} {measured:>9.2f} "
                f"{error:>+7.1%} {predicted.hit_rate:>9.3f} {cell['hit_rate']:>9.3f}",
                flush=True,
            )
    result = {
        "shape": args.shape,
        "max_prediction_error": max(abs(r["error"]) for r in rows),
        "max_prior_prediction_error": max(abs(r["prior_error"]) for r in rows),
        "disk_gbps": reads.gbps,
        "read_cpu_s_per_gb": reads.cpu_s_per_gb,
        "in_memory_tps": in_memory["decode_tps"],
        "budget_compute_tps": mapped["decode_tps"],
        "budget_compute_ratio": mapped["decode_tps"] / in_memory["decode_tps"],
        "usage_source": profile.usage_source,
        "rows": rows,
        "machine": machine_figures(),
    }
    print(describe(result["machine"]))
    print(f"max_prediction_error: {result['max_prediction_error']:.3f}")
    print(json.dumps(result))
    return 0


def _copy(folder: Path, to: Path) -> Path:
    """Each cell starts from the same history (the run adds its own usage to its copy)."""
    shutil.copytree(folder, to)
    return to


if __name__ == "__main__":
    sys.exit(main())
