"""What the Memory page shows: each model's predicted speed at every budget the slider stops at.

Computing it replays traces (about a second for both models), so the window does it on a
background thread and the page only reads the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.catalog import GIB, CatalogEntry, ModelCatalog
from app.downloads import ModelDownloader
from app.model_choice import BudgetSpeed, usable_ram
from app.speed.measurements import MachineSpeed
from app.speed.predict import Prediction, budget_steps, in_memory_need, predict
from app.speed.profiles import ModelProfile, model_profile
from engine.errors import EngineError
from engine.model_info import ModelInfo, inspect_model
from engine.synthetic import get_shape


@dataclass(frozen=True)
class ModelCurve:
    profile: ModelProfile
    points: list[Prediction]  # one per step of the plan
    compute_source: str

    @property
    def display_name(self) -> str:
        return self.profile.display_name

    @property
    def fits_in_memory_at(self) -> int:
        return in_memory_need(self.profile)


@dataclass(frozen=True)
class MemoryPlan:
    steps: list[int]  # budgets in bytes, ascending
    curves: list[ModelCurve]
    total_ram_bytes: int
    usable_bytes: int  # what is left beside the system and the app
    disk_source: str

    def at(self, curve: ModelCurve, budget_bytes: int) -> Prediction:
        """The prediction at the step nearest below `budget_bytes` (the slider stops at steps)."""
        below = [i for i, step in enumerate(self.steps) if step <= budget_bytes]
        return curve.points[below[-1] if below else 0]


def catalog_id_for(info: ModelInfo) -> str | None:
    """Which catalog model a file is, by its shape (a renamed or synthetic file included)."""
    for model_id in ("4b", "21b"):
        shape = get_shape(model_id)
        if (info.n_layer, info.n_expert, info.n_expert_used, info.n_embd) == (
            shape.n_layer,
            shape.n_expert,
            shape.n_expert_used,
            shape.n_embd,
        ):
            return model_id
    return None


def catalog_profiles(catalog: ModelCatalog, models_dir: Path, history_dir: Path | None) -> list[ModelProfile]:
    """Every catalog model, from its file where it is downloaded (with this machine's usage)."""
    downloader = ModelDownloader(models_dir)
    profiles = []
    for entry in catalog.entries:
        profiles.append(model_profile(entry, _inspected(downloader, entry), history_dir))
    return profiles


def _inspected(downloader: ModelDownloader, entry: CatalogEntry) -> ModelInfo | None:
    path = downloader.local_path(entry)
    if path is None:
        return None
    try:
        return inspect_model(path)
    except (EngineError, OSError):
        return None  # predicted from the published shape instead


def memory_plan(
    profiles: list[ModelProfile], machine: MachineSpeed, total_ram_bytes: int, steps: list[int] | None = None
) -> MemoryPlan:
    """`steps`: the budgets to predict at; by default the slider's for this much RAM."""
    steps = steps or budget_steps(total_ram_bytes)
    curves = [
        ModelCurve(p, [predict(p, machine, b) for b in steps], machine.compute_source(p.model_id)) for p in profiles
    ]
    return MemoryPlan(steps, curves, total_ram_bytes, usable_ram(total_ram_bytes), machine.disk_source)


def budget_speed(plan: MemoryPlan, min_tps: float) -> BudgetSpeed:
    """The recommendation's view of a plan (lookups only: no replay on the caller's thread)."""
    by_id = {c.profile.model_id: c for c in plan.curves}

    def predict_tps(model_id: str, budget_bytes: int) -> float | None:
        curve = by_id.get(model_id)
        return plan.at(curve, budget_bytes).tokens_per_s if curve is not None else None

    return BudgetSpeed(predict_tps, plan.disk_source, min_tps)


def describe(prediction: Prediction) -> str:
    """One model at one budget, in words: "about 9 tokens/s, 62% of experts in memory"."""
    if not prediction.runs:
        return "does not fit"
    speed = f"about {prediction.tokens_per_s:.0f} tokens/s"
    if prediction.in_memory:
        return f"{speed}, wholly in memory"
    return f"{speed}, {prediction.experts_resident:.0%} of experts in memory"


def gib(n: float) -> str:
    return f"{n / GIB:g} GiB" if (n / GIB * 2).is_integer() else f"{n / GIB:.1f} GiB"
