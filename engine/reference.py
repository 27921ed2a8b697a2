"""llama-cpp-python's plain `Llama(...)` with its defaults: what a user would otherwise run.

Only the benchmarks use this, to measure our engine against it in the same run. It
lives in `engine/` because that is the one package allowed to import llama_cpp.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import llama_cpp

from engine.config import SamplingParams


class PlainLlama:
    def __init__(self, model_path: str | Path, *, n_ctx: int, n_threads: int) -> None:
        started = time.perf_counter()
        self.llama = llama_cpp.Llama(str(model_path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        self.load_seconds = time.perf_counter() - started

    def stream_tokens(self, prompt_tokens: Sequence[int], sampling: SamplingParams) -> Iterator[str]:
        """One streamed piece of text per generated token, as `create_completion` gives them."""
        for chunk in self.llama.create_completion(
            list(prompt_tokens),
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stream=True,
        ):
            yield chunk["choices"][0]["text"]

    def tokens_generated(self, n_prompt: int) -> int:
        """Tokens sampled by the last `stream_tokens`, which may hold text back (stop strings,
        partial characters). The last one sampled is never evaluated, hence the +1."""
        return self.llama.n_tokens - n_prompt + 1

    def close(self) -> None:
        self.llama.close()
