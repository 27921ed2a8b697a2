"""What the prediction knows of a model without loading it: its bytes and which experts it uses.

Bytes come from the file where it is on disk, else from the published shape (the synthetic
writer's tensor plan has the real tensor sizes). Usage comes from this machine's own
history of the model (engine/experts/history.py: counts per layer and expert kept across
sessions) where it holds enough tokens, else from a prior derived from the synthetic
skewed router, and the source is said wherever the figure is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.catalog import CatalogEntry
from engine.experts.footprint import ExpertFootprint
from engine.experts.history import history_file, history_tokens, load_history
from engine.model_info import ModelInfo
from engine.synthetic import get_shape, plan_tensors
from engine.synthetic.router_prior import skewed_router_shares

# A history shorter than this says more about one conversation than about the model.
MIN_HISTORY_TOKENS = 128
PRIOR_LABEL = "a prior from the synthetic skewed router (no usage recorded here yet)"


@dataclass(frozen=True, eq=False)
class ModelProfile:
    model_id: str
    display_name: str
    footprint: ExpertFootprint
    shares: np.ndarray  # [n_layer, n_expert] expert selection shares per layer
    usage_source: str  # said beside the prediction
    file_bytes: int
    kv_bytes: int  # at the default context
    on_disk: bool


def shape_footprint(model_id: str) -> ExpertFootprint:
    shape = get_shape(model_id)
    return ExpertFootprint.from_tensors(
        ((p.name, p.nbytes) for p in plan_tensors(shape)), shape.n_layer, shape.n_expert, shape.n_expert_used
    )


def usage_shares(footprint: ExpertFootprint, history: np.ndarray | None) -> tuple[np.ndarray, str]:
    if history is not None and history_tokens(history, footprint.n_expert_used) >= MIN_HISTORY_TOKENS:
        tokens = history_tokens(history, footprint.n_expert_used)
        # An expert never seen still has some chance: a floor keeps it in the draw.
        floor = history.sum(axis=1, keepdims=True) * 1e-4 + 1e-12
        return history + floor, f"your usage history ({tokens:,.0f} tokens)"
    prior = skewed_router_shares(footprint.n_layer, footprint.n_expert, footprint.n_expert_used)
    return prior, PRIOR_LABEL


def model_profile(entry: CatalogEntry, info: ModelInfo | None = None, history_dir: Path | None = None) -> ModelProfile:
    """`info`: the model's file, inspected, where it is on disk; `history_dir`: the engine's
    expert usage folder."""
    footprint = ExpertFootprint.of_model(info) if info is not None else shape_footprint(entry.id)
    history = None
    if info is not None and history_dir is not None:
        history = load_history(history_file(history_dir, info), footprint.n_layer, footprint.n_expert)
    shares, source = usage_shares(footprint, history)
    return ModelProfile(
        model_id=entry.id,
        display_name=entry.display_name,
        footprint=footprint,
        shares=shares,
        usage_source=source,
        file_bytes=info.file_size if info is not None else entry.size_bytes,
        kv_bytes=entry.kv_bytes(),
        on_disk=info is not None,
    )
