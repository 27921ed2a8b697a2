"""Speed as the conversation grows: our engine against plain `Llama()` at 0.5K-16K tokens.

For each prompt length, each set-up runs in a child process of its own: a fresh model
load, a short warm-up, then a prefill of exactly that many tokens from an empty cache and
DECODE_TOKENS greedy tokens after it. These machines are noisy (a shared VM), so the
set-ups alternate in order from one length to the next, short prefills are repeated
(best of PREFILL_REPEATS up to 4K tokens), and decode is the best of DECODE_REPEATS runs at
the same context (the same prompt again: both set-ups reuse its cache and only decode).
Timed the same way from outside as bench/engine.py: TTFT, prefill = prompt tokens / TTFT,
decode over the tokens after the first.

Set-ups: `ours` (the engine as the app configures it), `reference` (llama-cpp-python's
`Llama()` with its defaults), `ours-q8` (a q8_0 KV cache, which needs flash attention; not
in the default run, since its prefill at 16K would take about 20 minutes here),
`ours-fa-on` / `ours-fa-off` (flash attention forced), `ours-ub<N>` (batches of N tokens),
and for a model with sliding-window layers `ours-swa-full` (those layers keep the whole
context, as llama.cpp's swa_full).

    python bench/context.py                          (or: smallthinker bench context)
    python bench/context.py --lengths 512,2048 --setups ours,reference,ours-fa-on
    python bench/context.py --skip-21b               (the 21B part writes a ~12 GB file)
    python bench/context.py --only-21b               (the 21B part alone: about an hour here)

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: `engine` must be the package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.engine import child_figures, peak_rss_bytes, timed_stream, token_events  # noqa: E402
from bench.machine import describe, machine_figures  # noqa: E402
from engine.config import EngineConfig, FlashAttention, KvType, SamplingParams  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.synthetic import get_shape, write_synthetic_model  # noqa: E402

LENGTHS = (512, 2048, 4096, 8192, 16384)
SETUPS = ("ours", "reference")
LENGTH_21B = 16384
SETUPS_21B = ("ours", "ours-swa-full")
DECODE_TOKENS = 48
DECODE_REPEATS = 3
PREFILL_REPEATS = 2  # at lengths up to REPEAT_PREFILL_UP_TO; longer prefills average out the noise
REPEAT_PREFILL_UP_TO = 4096
THREADS = 2
SAMPLING = SamplingParams(temperature=0.0, max_tokens=DECODE_TOKENS)
# Prose of many words, so that the prompt is not one token repeated.
FILLER = (
    "The committee reviewed the annual report on regional water supply, the budget for "
    "repairs to the northern pumping station, and a proposal to replace {n} kilometres of "
    "old cast-iron pipe before the winter. Members asked how the contractor would be chosen. "
)


def n_ctx_for(length: int) -> int:
    """Room for the prompt and the answer, in llama.cpp's 256-cell steps."""
    return (length + DECODE_TOKENS + 256 + 255) // 256 * 256


def prompt_of(engine: Engine, length: int) -> list[int]:
    """Exactly `length` tokens: a user message of filler, closed by the assistant header."""
    head = engine.encode_conversation([{"role": "user", "content": ""}])
    text, n = "", 0
    while len(engine.tokenize(text)) < length:
        text += " ".join(FILLER.format(n=n + k) for k in range(20))
        n += 20
    body = engine.encode_conversation([{"role": "user", "content": text}])
    return body[: length - 5] + head[-5:]


def engine_config(setup: str, length: int) -> EngineConfig:
    config = {"n_ctx": n_ctx_for(length), "n_threads": THREADS}
    if setup == "ours-q8":
        config["kv_type"] = KvType.Q8_0
    elif setup == "ours-fa-on":
        config["flash_attention"] = FlashAttention.ON
    elif setup == "ours-fa-off":
        config["flash_attention"] = FlashAttention.OFF
    elif setup == "ours-swa-full":
        config["full_window_cache"] = True
    elif setup.startswith("ours-ub"):
        config["n_batch"] = int(setup.removeprefix("ours-ub"))
    elif setup != "ours":
        raise SystemExit(f"unknown set-up {setup!r}")
    return EngineConfig(**config)


def best_runs(run, length: int) -> dict:
    """Prefill from an empty cache (best of PREFILL_REPEATS on short prompts), then decode
    again at the same context until DECODE_REPEATS decode runs: the best of each."""
    run(32, fresh=True)  # warm-up
    prefills = [run(length, fresh=True) for _ in range(PREFILL_REPEATS if length <= REPEAT_PREFILL_UP_TO else 1)]
    decodes = [r["decode_tps"] for r in prefills]
    decodes += [run(length, fresh=False)["decode_tps"] for _ in range(DECODE_REPEATS - len(decodes))]
    best = min(prefills, key=lambda r: r["ttft_s"])
    return {
        **best,
        "decode_tps": max(decodes),
        "decode_samples": decodes,
        "ttft_samples": [r["ttft_s"] for r in prefills],
    }


def child_ours(model: Path, setup: str, length: int) -> dict:
    engine = Engine(model, engine_config(setup, length))
    prompt = prompt_of(engine, length)

    def run(n: int, fresh: bool) -> dict:
        if fresh:
            engine.forget_conversations()
        return timed_stream(token_events(engine, prompt[-n:], SAMPLING), n)

    figures = best_runs(run, length)
    figures.update(
        kv_bytes=engine.kv.total_bytes,
        kv_global_bytes=engine.kv.global_bytes,
        kv_window_bytes=engine.kv.window_bytes,
        flash_attention=engine.config.flash_attention_on,
        batch=engine.config.batch,
    )
    engine.close()
    figures["peak_rss"] = peak_rss_bytes()
    return figures


def child_reference(model: Path, length: int) -> dict:
    from engine.reference import PlainLlama

    tokenizer = Engine(model, EngineConfig(n_ctx=n_ctx_for(length), n_threads=THREADS))
    prompt = prompt_of(tokenizer, length)
    tokenizer.close()
    reference = PlainLlama(model, n_ctx=n_ctx_for(length), n_threads=THREADS)

    def run(n: int, fresh: bool) -> dict:
        if fresh:
            reference.llama.reset()  # else create_completion reuses the cached prompt
        tokens = prompt[-n:]
        return timed_stream(
            reference.stream_tokens(tokens, SAMPLING), n, lambda: reference.tokens_generated(len(tokens))
        )

    figures = best_runs(run, length)
    reference.close()
    figures["peak_rss"] = peak_rss_bytes()
    return figures


def run_child(model: Path, setup: str, length: int) -> dict:
    argv = [__file__, "--child", setup, "--model", str(model), "--lengths", str(length)]
    return child_figures(argv, f"{setup} run at {length} tokens")


def measure(model: Path, setups: list[str], lengths: list[int], label: str) -> dict[str, dict[int, dict]]:
    results: dict[str, dict[int, dict]] = {setup: {} for setup in setups}
    for i, length in enumerate(lengths):
        for setup in setups if i % 2 == 0 else setups[::-1]:
            started = time.perf_counter()
            r = results[setup][length] = run_child(model, setup, length)
            print(
                f"{label} {length:>6} tokens {setup:>14}: prefill {r['prefill_tps']:7.1f} tok/s, "
                f"decode {r['decode_tps']:6.2f} tok/s, TTFT {r['ttft_s']:7.1f} s "
                f"({time.perf_counter() - started:.0f} s with load)",
                flush=True,
            )
    return results


def ratios(results: dict[str, dict[int, dict]], setup: str, lengths: list[int]) -> dict:
    """Per length, `setup` over the reference: above 1 is faster (TTFT: reference / ours)."""
    ours, ref = results[setup], results["reference"]
    return {
        "decode": {n: ours[n]["decode_tps"] / ref[n]["decode_tps"] for n in lengths},
        "prefill": {n: ours[n]["prefill_tps"] / ref[n]["prefill_tps"] for n in lengths},
        "ttft_speedup": {n: ref[n]["ttft_s"] / ours[n]["ttft_s"] for n in lengths},
    }


def report_4b(results: dict, setups: list[str], lengths: list[int]) -> dict:
    figures: dict = {"lengths": lengths, "setups": setups, "results_4b": results}
    if "reference" in results and "ours" in results:
        r = ratios(results, "ours", lengths)
        figures.update(
            decode_ratio=r["decode"],
            prefill_ratio=r["prefill"],
            ttft_speedup=r["ttft_speedup"],
            min_decode_ratio=min(r["decode"].values()),
            min_prefill_ratio=min(r["prefill"].values()),
        )
    print(f"\n4B shape, {THREADS} threads, {DECODE_TOKENS} tokens decoded after each prompt")
    print(f"{'tokens':>7} {'set-up':>14} {'prefill tok/s':>14} {'decode tok/s':>13} {'TTFT s':>8} {'KV MiB':>8}")
    for n in lengths:
        for setup in setups:
            r = results[setup][n]
            kv = f"{r['kv_bytes'] / (1 << 20):8.0f}" if "kv_bytes" in r else f"{'':8}"
            print(f"{n:>7} {setup:>14} {r['prefill_tps']:14.1f} {r['decode_tps']:13.2f} {r['ttft_s']:8.1f} {kv}")
        if "decode_ratio" in figures:
            print(
                f"{'':>7} {'ours/plain':>14} {figures['prefill_ratio'][n]:14.3f} {figures['decode_ratio'][n]:13.3f} "
                f"{1 / figures['ttft_speedup'][n]:8.3f}"
            )
    for setup in setups:
        if setup not in ("ours", "reference") and "reference" in results:
            r = ratios(results, setup, lengths)
            figures[f"{setup.replace('-', '_')}_decode_ratio"] = r["decode"]
            figures[f"{setup.replace('-', '_')}_prefill_ratio"] = r["prefill"]
    if "ours-q8" in results and "ours" in results:
        figures["q8_decode_cost"] = {
            n: 1 - results["ours-q8"][n]["decode_tps"] / results["ours"][n]["decode_tps"] for n in lengths
        }
        figures["q8_kv_saving_bytes"] = {
            n: results["ours"][n]["kv_bytes"] - results["ours-q8"][n]["kv_bytes"] for n in lengths
        }
    return figures


def report_21b(results: dict) -> dict:
    hybrid, full = results["ours"][LENGTH_21B], results["ours-swa-full"][LENGTH_21B]
    figures = {
        "results_21b": results,
        "kv_bytes_21b_window": hybrid["kv_bytes"],
        "kv_bytes_21b_swa_full": full["kv_bytes"],
        "kv_saving_21b": 1 - hybrid["kv_bytes"] / full["kv_bytes"],
        "decode_ratio_21b_window_over_swa_full": hybrid["decode_tps"] / full["decode_tps"],
        "prefill_ratio_21b_window_over_swa_full": hybrid["prefill_tps"] / full["prefill_tps"],
    }
    print(
        f"\n21B shape at {LENGTH_21B} tokens: window-bounded KV {hybrid['kv_bytes'] / (1 << 20):.0f} MiB, "
        f"swa_full {full['kv_bytes'] / (1 << 20):.0f} MiB ({figures['kv_saving_21b']:.1%} less); decode "
        f"{hybrid['decode_tps']:.2f} vs {full['decode_tps']:.2f} tok/s "
        f"(ratio {figures['decode_ratio_21b_window_over_swa_full']:.3f}), prefill {hybrid['prefill_tps']:.1f} vs "
        f"{full['prefill_tps']:.1f} tok/s"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a 4B-shape GGUF (default: write a synthetic one)")
    parser.add_argument("--model-21b", type=Path, help="a 21B-shape GGUF (default: write a synthetic one)")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="prompt lengths in tokens")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated set-ups (see above)")
    parser.add_argument("--skip-21b", action="store_true", help="leave out the 21B window-cache comparison")
    parser.add_argument("--only-21b", action="store_true", help="only the 21B window-cache comparison")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    if args.child:
        figures = (
            child_reference(args.model, lengths[0])
            if args.child == "reference"
            else child_ours(args.model, args.child, lengths[0])
        )
        print(json.dumps(figures))
        return
    setups = args.setups.split(",")
    figures: dict = {"decode_tokens": DECODE_TOKENS, "threads": THREADS, "machine": machine_figures()}
    with tempfile.TemporaryDirectory(prefix="bench-context-") as tmp:
        if not args.only_21b:
            model = args.model or write_synthetic_model(get_shape("4b"), Path(tmp) / "synthetic-4b.gguf")
            figures.update(report_4b(measure(model, setups, lengths, "4B"), setups, lengths))
            if args.model is None:
                os.remove(model)  # room on disk for the 21B file
        if not args.skip_21b:
            model_21b = args.model_21b or write_synthetic_model(get_shape("21b"), Path(tmp) / "synthetic-21b.gguf")
            figures.update(report_21b(measure(model_21b, list(SETUPS_21B), [LENGTH_21B], "21B")))
    print(describe(figures["machine"]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
