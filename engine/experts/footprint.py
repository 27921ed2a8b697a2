"""A model's bytes as the expert manager sees them: fixed weights, experts, and how many fit a budget.

The manager keeps resident the weights every token needs (attention, norms, routers,
output; of the token embedding only the rows in use) and fills the rest of its budget with
whole experts. The same arithmetic serves the speed prediction (app/speed), which must
know a model's capacity at a budget before the model is loaded, or even downloaded: a
footprint comes from a file's tensor list or from the published shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.experts.map import EXPERT_TENSORS
from engine.model_info import ModelInfo

# Pages of the embedding table touched so far are counted when measured; before the first
# sweep this much is assumed.
EMBEDDING_ALLOWANCE = 32 << 20


@dataclass(frozen=True)
class ExpertFootprint:
    n_layer: int
    n_expert: int
    n_expert_used: int
    expert_bytes: int  # one expert's three matrices
    fixed_bytes: int  # never evicted (embedding rows estimated)
    model_bytes: int  # every tensor
    embedding_bytes: int

    @classmethod
    def from_tensors(
        cls, tensors: Iterable[tuple[str, int]], n_layer: int, n_expert: int, n_expert_used: int
    ) -> ExpertFootprint:
        """`tensors`: (llama.cpp name, bytes) of every tensor of the file."""
        sizes = dict(tensors)
        experts = sum(n for name, n in sizes.items() if name.split(".")[-2] in EXPERT_TENSORS)
        per_layer = experts // max(1, n_layer)
        embedding = sizes["token_embd.weight"]
        total = sum(sizes.values())
        return cls(
            n_layer=n_layer,
            n_expert=n_expert,
            n_expert_used=n_expert_used,
            expert_bytes=per_layer // n_expert,
            fixed_bytes=total - experts - embedding + min(embedding, EMBEDDING_ALLOWANCE),
            model_bytes=total,
            embedding_bytes=embedding,
        )

    @classmethod
    def of_model(cls, info: ModelInfo) -> ExpertFootprint:
        return cls.from_tensors(
            ((t.name, t.nbytes) for t in info.tensors.values()), info.n_layer, info.n_expert, info.n_expert_used
        )

    @property
    def n_keys(self) -> int:
        return self.n_layer * self.n_expert

    @property
    def minimum_budget(self) -> int:
        """Fixed weights plus every expert of one layer (a prompt batch may use them all)."""
        return self.fixed_bytes + self.n_expert * self.expert_bytes

    @property
    def active_bytes_per_token(self) -> int:
        """Weights one decoded token reads: what its compute time scales with on a CPU."""
        unused_embedding = min(self.embedding_bytes, EMBEDDING_ALLOWANCE)
        return self.fixed_bytes - unused_embedding + self.n_layer * self.n_expert_used * self.expert_bytes

    def capacity(self, budget_bytes: int, fixed_bytes: int | None = None) -> int:
        """Whole experts that fit beside the fixed weights (at least one layer's), with a margin
        for what a sweep has not yet seen; `fixed_bytes`: as measured, where it was."""
        fixed = self.fixed_bytes if fixed_bytes is None else fixed_bytes
        margin = budget_bytes // 200 + (4 << 20)
        return int(max(self.n_expert, (budget_bytes - fixed - margin) // self.expert_bytes))
