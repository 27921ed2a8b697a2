"""Where each expert of a SmallThinker GGUF lies in the file, and every layer's router.

A layer stores its experts as three 3-D tensors (`ffn_gate_exps`, `ffn_up_exps`,
`ffn_down_exps`) whose outermost dimension is the expert, so expert e of a layer is one
contiguous slice of each: three byte ranges. The routers (`ffn_gate_inp`, F32
[n_expert x n_embd]) are small and read once with pread, never mapped: a second mapping
of the file would stop MADV_PAGEOUT from evicting the pages llama.cpp maps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from engine.errors import ModelLoadError
from engine.model_info import ModelInfo

EXPERT_TENSORS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
GGML_TYPE_F32 = 0


@dataclass(frozen=True)
class ExpertMap:
    n_layer: int
    n_expert: int
    n_expert_used: int
    # [layer, matrix (gate, up, down)] -> file offset of expert 0, and bytes per expert
    base_offsets: np.ndarray
    matrix_bytes: np.ndarray
    # float32 [n_layer * n_expert, n_embd]: every layer's router, one after the other, so that
    # consecutive layers' routers are one contiguous slice (see `route`)
    all_routers: np.ndarray
    model_bytes: int  # every tensor

    @property
    def routers(self) -> list[np.ndarray]:
        """Per layer, float32 [n_expert, n_embd] (views)."""
        return [self._routers_of(layer, 1) for layer in range(self.n_layer)]

    def _routers_of(self, first_layer: int, n_layers: int) -> np.ndarray:
        return self.all_routers[first_layer * self.n_expert : (first_layer + n_layers) * self.n_expert]

    @property
    def expert_bytes(self) -> int:
        """Bytes of one expert (its three matrices); the same in every layer of these models."""
        return int(self.matrix_bytes.sum(axis=1).max())

    @property
    def all_experts_bytes(self) -> int:
        return int(self.matrix_bytes.sum()) * self.n_expert

    @property
    def non_expert_bytes(self) -> int:
        return self.model_bytes - self.all_experts_bytes

    def ranges(self, layer: int, expert: int) -> list[tuple[int, int]]:
        """(file offset, length) of expert `expert`'s gate, up and down matrices in `layer`."""
        sizes = self.matrix_bytes[layer]
        return [(int(self.base_offsets[layer, m] + expert * sizes[m]), int(sizes[m])) for m in range(3)]

    def select(self, layer: int, layer_input: np.ndarray) -> np.ndarray:
        """Which experts `layer` uses for each row of its input: bool [n_tokens, n_expert].

        llama.cpp ranks sigmoid(router logits) in float32. Where sigmoid saturates, several
        experts tie for the last places and llama.cpp's (unstable) sort picks among them:
        every tied expert is marked, so a row then names more than k experts.
        """
        if len(layer_input) == 1:  # decode: the cheap path (this runs inside llama.cpp's graph)
            chosen = np.zeros((1, self.n_expert), dtype=bool)
            chosen[0, self.route(layer, layer_input[0], 1)[0]] = True
            return chosen
        logits = layer_input.astype(np.float32, copy=False) @ self._routers_of(layer, 1).T
        scores = np.float32(1) / (np.float32(1) + np.exp(-logits))
        k = self.n_expert_used
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        return scores >= kth

    @property
    def n_guessed(self) -> int:
        """How many of a later layer's guessed experts are read whole: its router's top half.
        The lower ranks are mostly wrong, and on 2 cores a wasted read costs the compute its
        CPU time. Synthetic 4B (k = 4) at a 1 GiB budget, interleaved runs of 256 tokens:
        guessing all k (and ties) 5.43/5.44 tokens/s with 15.7% of the bytes read wasted; the
        top 3 6.44 (5.4% wasted); the top 2 6.35/6.57/6.44 (1.3%); the top 1 6.24 (0.1%).
        (With direct reads the rest of the k have their gate matrix read: see manager.py.)"""
        return (self.n_expert_used + 1) // 2

    def route(self, first_layer: int, row: np.ndarray, n_layers: int) -> list[list[int]]:
        """One token's experts in `n_layers` layers from `first_layer` on, every router applied
        to the same input `row`: exact for the layer it is the input of (ties included as in
        `select`), a guess of the k best for the later ones, best first. One matrix product over
        the stacked routers and a Python sort of a few scores: numpy calls cost microseconds
        each on the computing thread. The routers are consecutive rows of `all_routers`: a
        slice, no copy."""
        logits = row.astype(np.float32, copy=False) @ self._routers_of(first_layer, n_layers).T
        scores = (np.float32(1) / (np.float32(1) + np.exp(-logits))).tolist()
        n, k = self.n_expert, self.n_expert_used
        layer_scores = scores[:n]
        kth = sorted(layer_scores, reverse=True)[k - 1]
        chosen = [[e for e, score in enumerate(layer_scores) if score >= kth]]
        for start in range(n, len(scores), n):
            layer_scores = scores[start : start + n]
            chosen.append(sorted(range(n), key=layer_scores.__getitem__, reverse=True)[:k])
        return chosen


def expert_map(info: ModelInfo) -> ExpertMap:
    """The expert map of a model already checked by `inspect_model`."""
    base = np.zeros((info.n_layer, 3), dtype=np.int64)
    sizes = np.zeros((info.n_layer, 3), dtype=np.int64)
    routers = []
    with open(info.path, "rb") as f:
        fd = f.fileno()
        for layer in range(info.n_layer):
            for m, name in enumerate(EXPERT_TENSORS):
                t = info.tensors[f"blk.{layer}.{name}.weight"]
                if t.dims[-1] != info.n_expert or t.nbytes % info.n_expert:
                    raise ModelLoadError(f"{t.name} does not hold {info.n_expert} experts; the file is damaged")
                base[layer, m], sizes[layer, m] = t.offset, t.nbytes // info.n_expert
            routers.append(_read_router(fd, info, layer))
    return ExpertMap(
        n_layer=info.n_layer,
        n_expert=info.n_expert,
        n_expert_used=info.n_expert_used,
        base_offsets=base,
        matrix_bytes=sizes,
        all_routers=np.concatenate(routers),
        model_bytes=sum(t.nbytes for t in info.tensors.values()),
    )


def _read_router(fd: int, info: ModelInfo, layer: int) -> np.ndarray:
    t = info.tensors[f"blk.{layer}.ffn_gate_inp.weight"]
    if t.ggml_type != GGML_TYPE_F32 or t.dims[:2] != (info.n_embd, info.n_expert):
        raise ModelLoadError(f"{t.name} is not an F32 [{info.n_expert} x {info.n_embd}] router")
    data = os.pread(fd, t.nbytes, t.offset)
    if len(data) != t.nbytes:
        raise ModelLoadError(f"{info.path.name} ends inside {t.name}; the file is truncated")
    return np.frombuffer(data, dtype=np.float32).reshape(info.n_expert, info.n_embd)
