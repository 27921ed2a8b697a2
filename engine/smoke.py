"""Load a GGUF with llama.cpp and decode a few tokens: proof that a file really runs.

Used by `smallthinker synth --verify` and by tests; the streaming chat engine proper
lives elsewhere in `engine/`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from engine.chat_template import ChatTemplate
from engine.errors import ModelLoadError

_DEFAULT_MESSAGES = (
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say something about the weather."},
)


@dataclass(frozen=True)
class SmokeResult:
    prompt: str
    prompt_tokens: tuple[int, ...]
    generated_tokens: tuple[int, ...]
    text: str
    load_seconds: float
    decode_tokens_per_second: float


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return llama.tokenizer().detokenize([token]).decode("utf-8", errors="replace")


def run_smoke_test(
    model_path: str | Path,
    *,
    n_tokens: int = 8,
    n_ctx: int = 512,
    n_threads: int | None = None,
    messages=_DEFAULT_MESSAGES,
) -> SmokeResult:
    """Chat-format `messages` with the file's template, prefill it, decode `n_tokens` greedily."""
    start = time.perf_counter()
    try:
        llama = llama_cpp.Llama(str(model_path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {model_path}: {exc}") from exc
    try:
        load_seconds = time.perf_counter() - start
        template = ChatTemplate(
            llama.metadata.get("tokenizer.chat_template", ""),
            eos_token=_token_text(llama, llama.token_eos()),
        )
        prompt = template.render(messages)
        prompt_tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llama.eval(prompt_tokens)
        generated: list[int] = []
        decode_start = time.perf_counter()
        while len(generated) < n_tokens:
            token = llama.sample(top_k=1, temp=0.0)
            generated.append(token)
            llama.eval([token])
        decode_seconds = time.perf_counter() - decode_start
        text = llama.detokenize(generated).decode("utf-8", errors="replace")
        return SmokeResult(
            prompt=prompt,
            prompt_tokens=tuple(prompt_tokens),
            generated_tokens=tuple(generated),
            text=text,
            load_seconds=load_seconds,
            decode_tokens_per_second=n_tokens / decode_seconds if decode_seconds > 0 else 0.0,
        )
    finally:
        llama.close()
