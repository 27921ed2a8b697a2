"""Which experts the synthetic skewed router picks, without writing or running a model.

The writer draws each router row from N(0, 1/n_embd) and multiplies the hot rows by
`RouterSkew.scale`; for a layer input spread evenly over its dimensions, an expert's logit
is then Gaussian with a spread proportional to its row's norm, so a layer's choice is the
top k of independent normals, hot ones `scale` times wider. The shares this gives (4B
shape: the hot quarter takes 0.48 of the selections) serve as the usage prior of a model
nobody has used on this machine yet, labelled as derived from the synthetic router.
"""

from __future__ import annotations

import numpy as np

from engine.synthetic.writer import RouterSkew


def skewed_router_shares(
    n_layer: int, n_expert: int, n_expert_used: int, skew: RouterSkew | None = None, *, draws: int = 8192
) -> np.ndarray:
    """[n_layer, n_expert] selection shares (each row sums to 1); the hot experts come first."""
    skew = skew or RouterSkew()
    spread = np.ones(n_expert)
    spread[: max(1, round(skew.hot_fraction * n_expert))] = skew.scale
    logits = np.random.default_rng(0).standard_normal((draws, n_expert)) * spread
    chosen = np.argpartition(-logits, n_expert_used - 1, axis=1)[:, :n_expert_used]
    shares = np.bincount(chosen.ravel(), minlength=n_expert) / chosen.size
    return np.tile(shares, (n_layer, 1))
