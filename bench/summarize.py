"""Pages per minute when summarising a 50-page PDF on the synthetic 4B shape.

The document is a PDF with a text layer written on the fly (about 300 words a page); the
model is the synthetic 4B (random weights: its summaries are gibberish, and since it
rarely stops by itself every summary runs to the length limit, so this is a slow case:
a real model's shorter summaries cost less). The reference, measured in the same run on
the same engine: the time the model itself needs for the tokens the plan evaluated and
wrote, at the prefill and decode speeds of a plain probe. Their ratio is what the
summariser's planning, tokenizing and prompt building cost on top.

    python bench/summarize.py [--model FILE.gguf] [--pages 50] [--context 4096]
    (or: smallthinker bench summarize ...)

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: `engine` must be the package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from app.documents import read_document  # noqa: E402
from app.summarizer import Summarizer  # noqa: E402
from bench.machine import describe, machine_figures  # noqa: E402
from engine.config import EngineConfig, SamplingParams  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.synthetic import get_shape, write_synthetic_model  # noqa: E402
from tests.app.document_files import page_text, write_pdf  # noqa: E402

SAMPLING = SamplingParams(temperature=0.3, top_k=20, top_p=0.95, seed=11)


def probe_speeds(engine: Engine, n_prompt: int = 512, n_decode: int = 64) -> tuple[float, float]:
    """Prefill and decode tokens/s of one plain prompt on the same engine."""
    prompt = engine.tokenize(page_text(1, 200))[:n_prompt]
    engine.forget_conversations()
    final = None
    for chunk in engine.stream_prompt(prompt, SamplingParams(temperature=0.0, max_tokens=n_decode)):
        final = chunk
    engine.forget_conversations()
    return final.stats.prefill_tokens_per_second, final.stats.decode_tokens_per_second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a SmallThinker GGUF (default: write the synthetic 4B)")
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--context", type=int, default=4096)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-summarize-") as folder:
        model = args.model or write_synthetic_model(get_shape("4b"), Path(folder) / "4b.gguf")
        pdf = write_pdf(Path(folder) / "report.pdf", [page_text(p, 24) for p in range(1, args.pages + 1)])
        document = read_document(pdf)
        with Engine(model, EngineConfig(n_ctx=args.context, n_threads=2)) as engine:
            prefill_tps, decode_tps = probe_speeds(engine)
            summarizer = Summarizer(engine, sampling=SAMPLING)
            events = []
            started = time.perf_counter()
            result = summarizer.summarize(document, lambda p: (events.append(p), print(p.describe(), flush=True)))
            seconds = time.perf_counter() - started
            ideal = summarizer.prefill_tokens / prefill_tps + summarizer.decoded_tokens / decode_tps
            figures = {
                "pages": document.pages,
                "words": len(document.text.split()),
                "document_tokens": summarizer.tokens(document.text),
                "seconds": seconds,
                "pages_per_minute": document.pages / seconds * 60,
                "sections": result.sections,
                "combining_levels": result.levels,
                "prefill_tokens": summarizer.prefill_tokens,
                "decoded_tokens": summarizer.decoded_tokens,
                "probe_prefill_tps": prefill_tps,
                "probe_decode_tps": decode_tps,
                "model_seconds_at_probe_speeds": ideal,
                "ideal_over_actual": ideal / seconds,
                "context": engine.n_ctx,
                "summary_tokens_max": summarizer.summary_tokens,
                "machine": machine_figures(),
            }
    print(describe(figures["machine"]))
    for key, value in figures.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
