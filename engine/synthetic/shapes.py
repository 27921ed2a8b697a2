"""The shapes the synthetic SmallThinker writer knows.

`4b` and `21b` are the published configurations (see shared/MODEL_FACTS.md), so a
file of that shape costs llama.cpp exactly what the real model costs. `tiny` and
`tiny-swa` are small enough for tests; `tiny-swa` has the 21B's layer pattern (one
global layer, then three sliding-window layers), so the hybrid KV cache can be tested
without the 21B's size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.errors import SyntheticModelError
from engine.model_info import SMALLTHINKER_SWA_WINDOW

QWEN2_VOCAB_SIZE = 151_936
# The real Qwen2 vocabulary has 151,643 ordinary tokens; the special tokens follow.
QWEN2_NORMAL_TOKENS = 151_643


@dataclass(frozen=True)
class SyntheticShape:
    name: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_expert: int
    n_expert_used: int
    n_ff_exp: int
    n_vocab: int
    n_normal_tokens: int
    context_length: int
    sliding_window: int | None  # None: every layer global (the 4B)
    general_name: str = ""  # what the official file says, where known
    rope_freq_base: float = 1_000_000.0

    @property
    def n_q(self) -> int:
        return self.n_head * self.head_dim

    @property
    def n_kv(self) -> int:
        return self.n_head_kv * self.head_dim

    def check(self) -> None:
        """Refuse shapes llama.cpp or Q4_0 cannot represent, with the reason."""
        for label, n in (("n_embd", self.n_embd), ("n_ff_exp", self.n_ff_exp), ("n_q", self.n_q)):
            if n % 32:
                raise SyntheticModelError(f"{label}={n} is not a multiple of 32 (Q4_0 block)")
        if self.n_head % self.n_head_kv:
            raise SyntheticModelError("n_head must be a multiple of n_head_kv")
        if not 0 < self.n_expert_used <= self.n_expert:
            raise SyntheticModelError("n_expert_used must be between 1 and n_expert")
        if self.n_normal_tokens + 3 > self.n_vocab:
            raise SyntheticModelError("the vocabulary has no room for the three special tokens")


_TINY = SyntheticShape(
    name="tiny", n_layer=4, n_embd=128, n_head=4, n_head_kv=2, head_dim=32,
    n_expert=8, n_expert_used=2, n_ff_exp=64, n_vocab=2048, n_normal_tokens=2045,
    context_length=8192, sliding_window=None,
)  # fmt: skip

SHAPES: dict[str, SyntheticShape] = {
    "tiny": _TINY,
    # Context beyond the window, so that the window layers' smaller cache shows.
    "tiny-swa": replace(_TINY, name="tiny-swa", context_length=16384, sliding_window=SMALLTHINKER_SWA_WINDOW),
    # Experts of whole pages (72 KiB a matrix), so that a budget test can evict and count
    # them the way the real shapes are.
    "small-moe": replace(
        _TINY, name="small-moe", n_embd=256, n_head=4, head_dim=64, n_expert=16, n_expert_used=4, n_ff_exp=512
    ),
    "4b": SyntheticShape(
        name="4b", n_layer=32, n_embd=1536, n_head=12, n_head_kv=2, head_dim=128,
        n_expert=32, n_expert_used=4, n_ff_exp=768, n_vocab=QWEN2_VOCAB_SIZE,
        n_normal_tokens=QWEN2_NORMAL_TOKENS, context_length=32768, sliding_window=None,
        general_name="4b_v7", rope_freq_base=1_500_000.0,
    ),
    "21b": SyntheticShape(
        name="21b", n_layer=52, n_embd=2560, n_head=28, n_head_kv=4, head_dim=128,
        n_expert=64, n_expert_used=6, n_ff_exp=768, n_vocab=QWEN2_VOCAB_SIZE,
        n_normal_tokens=QWEN2_NORMAL_TOKENS, context_length=16384,
        sliding_window=SMALLTHINKER_SWA_WINDOW,
    ),
}  # fmt: skip


def get_shape(name: str) -> SyntheticShape:
    try:
        return SHAPES[name]
    except KeyError:
        known = ", ".join(SHAPES)
        raise SyntheticModelError(f"unknown shape {name!r}; known shapes: {known}") from None
