"""Our engine against llama-cpp-python's plain `Llama(...)`, on the synthetic 4B shape.

Each set-up runs in a child process of its own, so its peak RSS is its own. These
machines are noisy (a shared VM), so each child warms up and then keeps the best of
REPEATS fresh prefill+decode runs (KV cache cleared before each), and the two set-ups
alternate over several rounds; the figures are medians of those bests. Both are timed
the same way from outside: time to the first streamed token, prefill rate = prompt
tokens / that time, decode rate over the tokens after the first.

    python bench/engine.py [--model FILE.gguf] [--rounds 3]     (or: smallthinker bench engine)

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: `engine` must be the package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.machine import describe, machine_figures  # noqa: E402
from engine.config import EngineConfig, Kernels, SamplingParams  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.synthetic import get_shape, write_synthetic_model  # noqa: E402

N_CTX = 4096
THREADS = 2
PROMPT_TOKENS = 256
DECODE_TOKENS = 128
TURNS = 10
REPEATS = 3
# Greedy, so that both set-ups decode the very same tokens through the random model.
SAMPLING = SamplingParams(temperature=0.0, max_tokens=DECODE_TOKENS)
# ours-safe: our engine on llama.cpp's plain kernels, what the kernel check falls back to.
KINDS = ("ours", "reference", "ours-safe")
FILLER = "The committee reviewed the annual report on regional water supply and the budget for repairs. "


def peak_rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed_stream(pieces, n_prompt: int, count_tokens=None) -> dict:
    """TTFT, prefill and decode rates of a stream of generated text pieces.

    `count_tokens()` gives the number of tokens generated when pieces are not one per token.
    """
    started = time.perf_counter()
    first = last = None
    n = 0
    for _ in pieces:
        last = time.perf_counter()
        first = first or last
        n += 1
    if first is None:
        raise RuntimeError("the model produced no token")
    n = count_tokens() if count_tokens else n
    ttft = first - started
    decode = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return {"ttft_s": ttft, "prefill_tps": n_prompt / ttft, "decode_tps": decode, "tokens_out": n}


def prompt_tokens_for(engine: Engine) -> list[int]:
    """A chat prompt of exactly PROMPT_TOKENS tokens from the model's own tokenizer."""
    text = FILLER * (PROMPT_TOKENS // 4)
    tokens = engine.encode_conversation([{"role": "user", "content": text}])
    head = engine.encode_conversation([{"role": "user", "content": ""}])
    return tokens[: PROMPT_TOKENS - 5] + head[-5:]  # keep the "assistant" header at the end


def token_events(engine: Engine, prompt: list[int], sampling: SamplingParams = SAMPLING):
    """Our stream: one chunk per generated token, checked against the engine's own count."""
    for pieces, chunk in enumerate(engine.stream_prompt(prompt, sampling)):
        if chunk.is_final:
            if chunk.stats.tokens_out != pieces:
                raise RuntimeError(f"{chunk.stats.tokens_out} tokens but {pieces} text pieces: timing would be off")
            return
        yield chunk.text


def best_of(run_once) -> dict:
    """Warm up once, then the best of REPEATS runs (noise only ever slows a run down)."""
    run_once(warm_up=True)
    runs = [run_once(warm_up=False) for _ in range(REPEATS)]
    return {
        "ttft_s": min(r["ttft_s"] for r in runs),
        "prefill_tps": max(r["prefill_tps"] for r in runs),
        "decode_tps": max(r["decode_tps"] for r in runs),
        "decode_samples": [r["decode_tps"] for r in runs],
    }


def child_ours(model: Path, kernels: Kernels = Kernels.AUTO) -> dict:
    engine = Engine(model, EngineConfig(n_ctx=N_CTX, n_threads=THREADS, kernels=kernels))
    prompt = prompt_tokens_for(engine)

    def run_once(warm_up: bool) -> dict:
        engine.forget_conversations()
        return timed_stream(token_events(engine, prompt[:32] if warm_up else prompt), len(prompt))

    figures = best_of(run_once)
    figures.update(
        turns=conversation_ttfts(engine),
        load_s=engine.load_seconds,
        mode=f"{engine.memory_mode.value}, {engine.kernels.value} kernels",
    )
    engine.close()
    figures["peak_rss"] = peak_rss_bytes()
    return figures


def conversation_ttfts(engine: Engine) -> list[float]:
    """TTFT of each turn of one conversation whose new messages all have the same length."""
    engine.forget_conversations()
    messages = [{"role": "system", "content": "You are a concise assistant."}]
    ttfts = []
    for turn in range(TURNS):
        messages.append({"role": "user", "content": f"Question {turn % 10}: {FILLER * 2}"})
        started, ttft, answer = time.perf_counter(), None, []
        for chunk in engine.stream_chat(messages, SamplingParams(max_tokens=48, seed=turn)):
            ttft = ttft if ttft is not None else time.perf_counter() - started
            answer.append(chunk.text)
        ttfts.append(ttft)
        messages.append({"role": "assistant", "content": "".join(answer)})
    return ttfts


def child_reference(model: Path) -> dict:
    from engine.reference import PlainLlama

    tokenizer = Engine(model, EngineConfig(n_ctx=512, n_threads=THREADS))
    prompt = prompt_tokens_for(tokenizer)
    tokenizer.close()  # frees its weights; peak RSS is read after the reference ran
    reference = PlainLlama(model, n_ctx=N_CTX, n_threads=THREADS)

    def run_once(warm_up: bool) -> dict:
        reference.llama.reset()  # no prefix reuse between runs
        tokens = prompt[:32] if warm_up else prompt
        # create_completion may hold text back (stop strings, partial characters): count its tokens.
        return timed_stream(
            reference.stream_tokens(tokens, SAMPLING), len(prompt), lambda: reference.tokens_generated(len(tokens))
        )

    figures = best_of(run_once)
    figures.update(load_s=reference.load_seconds, mode="llama-cpp-python defaults (mmap + repack)")
    reference.close()
    figures["peak_rss"] = peak_rss_bytes()
    return figures


def child_figures(argv: list[str], what: str) -> dict:
    """Run a benchmark's child process; its figures are the JSON object on its last line."""
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(kind: str, model: Path) -> dict:
    return child_figures([__file__, "--child", kind, "--model", str(model)], f"{kind} run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a 4B-shape GGUF (default: write a synthetic one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        children = {
            "ours": lambda: child_ours(args.model),
            "ours-safe": lambda: child_ours(args.model, Kernels.SAFE),
            "reference": lambda: child_reference(args.model),
        }
        print(json.dumps(children[args.child]()))
        return
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        model = args.model or write_synthetic_model(get_shape("4b"), Path(tmp) / "synthetic-4b.gguf")
        report(model, args.rounds)


def report(model: Path, rounds: int) -> None:
    runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for round_no in range(rounds):
        for kind in KINDS if round_no % 2 == 0 else KINDS[::-1]:
            runs[kind].append(run_child(kind, model))
            print(f"round {round_no + 1}/{rounds} {kind}: {runs[kind][-1]['decode_tps']:.1f} tok/s decode", flush=True)

    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    file_size = os.path.getsize(model)
    turn_ttfts = [statistics.median(r["turns"][i] for r in runs["ours"]) for i in range(TURNS)]
    figures = {
        "model_bytes": file_size,
        "n_ctx": N_CTX,
        "threads": THREADS,
        "prompt_tokens": PROMPT_TOKENS,
        "decode_tokens": DECODE_TOKENS,
        "rounds": rounds,
        "repeats_per_round": REPEATS,
        "machine": machine_figures(),
    }
    for kind in runs:
        for key in ("prefill_tps", "decode_tps", "ttft_s", "peak_rss", "load_s"):
            figures[f"{kind.replace('-', '_')}_{key}"] = median(kind, key)
    figures.update(
        decode_ratio=figures["ours_decode_tps"] / figures["reference_decode_tps"],
        prefill_ratio=figures["ours_prefill_tps"] / figures["reference_prefill_tps"],
        ttft_ratio=figures["ours_ttft_s"] / figures["reference_ttft_s"],
        safe_kernels_decode_ratio=figures["ours_safe_decode_tps"] / figures["reference_decode_tps"],
        safe_kernels_prefill_ratio=figures["ours_safe_prefill_tps"] / figures["reference_prefill_tps"],
        rss_ratio=figures["ours_peak_rss"] / figures["reference_peak_rss"],
        rss_over_file=figures["ours_peak_rss"] / file_size,
        reference_rss_over_file=figures["reference_peak_rss"] / file_size,
        ttft_turn1_s=turn_ttfts[0],
        ttft_turn10_s=turn_ttfts[-1],
        ttft_turn10_over_turn1=turn_ttfts[-1] / turn_ttfts[0],
    )
    print_table(figures)
    print(json.dumps(figures))


def print_table(f: dict) -> None:
    gib = 1 << 30
    rows = [
        ("prefill tok/s", f["ours_prefill_tps"], f["reference_prefill_tps"], f["prefill_ratio"]),
        ("decode tok/s", f["ours_decode_tps"], f["reference_decode_tps"], f["decode_ratio"]),
        ("TTFT s", f["ours_ttft_s"], f["reference_ttft_s"], f["ttft_ratio"]),
        (
            "peak RSS GiB",
            f["ours_peak_rss"] / gib,
            f["reference_peak_rss"] / gib,
            f["rss_ratio"],
        ),
    ]
    print(
        f"\nsynthetic 4B ({f['model_bytes'] / 1e9:.2f} GB), n_ctx {f['n_ctx']}, {f['threads']} threads, "
        f"medians over {f['rounds']} rounds of the best of {f['repeats_per_round']} runs"
    )
    print(f"{'':16}{'ours':>10}{'plain Llama':>13}{'ratio':>8}")
    for name, ours, ref, ratio in rows:
        print(f"{name:16}{ours:>10.2f}{ref:>13.2f}{ratio:>8.3f}")
    print(
        f"safe kernels (the fallback where the fast ones crash): decode {f['ours_safe_decode_tps']:.2f} tok/s "
        f"({f['safe_kernels_decode_ratio']:.3f}x plain Llama), prefill {f['ours_safe_prefill_tps']:.2f} tok/s "
        f"({f['safe_kernels_prefill_ratio']:.3f}x)"
    )
    print(describe(f["machine"]))
    print(f"peak RSS / file: ours {f['rss_over_file']:.3f}, plain Llama {f['reference_rss_over_file']:.3f}")
    print(
        f"TTFT turn 1 {f['ttft_turn1_s']:.3f} s, turn 10 {f['ttft_turn10_s']:.3f} s: "
        f"ratio {f['ttft_turn10_over_turn1']:.3f}"
    )


if __name__ == "__main__":
    main()
