"""Expert-usage traces drawn from per-layer usage shares, to replay through the cache.

A token picks k distinct experts per layer; drawing them without replacement in proportion
to their shares (the Gumbel top-k trick) reproduces the shares. Successive tokens are drawn
independently: SmallThinker's experts barely depend on the previous token's
(engine/experts/cache.py), and a trace with no locality does not flatter the cache.
"""

from __future__ import annotations

import numpy as np


def sample_trace(shares: np.ndarray, n_expert_used: int, n_tokens: int, seed: int = 0) -> list[np.ndarray]:
    """One access per (token, layer), in the order the engine makes them: the keys
    (layer * n_expert + expert) of that layer's experts. `shares`: [n_layer, n_expert] >= 0."""
    n_layer, n_expert = shares.shape
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore"):
        log_p = np.log(shares / shares.sum(axis=1, keepdims=True))
    keys = np.arange(n_layer)[:, None] * n_expert
    trace = []
    for _ in range(n_tokens):
        noisy = log_p + rng.gumbel(size=log_p.shape)
        chosen = np.argpartition(-noisy, n_expert_used - 1, axis=1)[:, :n_expert_used]
        trace.extend(np.sort(chosen + keys, axis=1))
    return trace
