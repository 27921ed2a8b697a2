"""The models this computer has: the catalog's downloaded ones, other GGUF files in the models
folder, the file loaded last wherever it lives, and SmallThinker files other apps downloaded
(app/model_discovery.py). For the window's model switcher and the model manager."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gguf.constants import GGMLQuantizationType

from app.catalog import ModelCatalog
from app.downloads import ModelDownloader
from app.model_discovery import FoundModel
from engine.errors import EngineError
from engine.gguf_file import read_gguf

OURS = "SmallThinker models folder"


@dataclass(frozen=True)
class InstalledModel:
    name: str  # the catalog's display name, else the file's name without .gguf
    path: Path
    source: str = OURS  # where it lives: our folder, "opened from disk", or the app that downloaded it

    @property
    def deletable(self) -> bool:
        """Only files in our own folder: another app's file is that app's to remove."""
        return self.source == OURS


def installed_models(
    models_dir: Path, catalog: ModelCatalog, also: list[Path] = (), found: list[FoundModel] = ()
) -> list[InstalledModel]:
    """Each file once, the catalog's first; a file named in `also` only if it exists."""
    seen: dict[Path, InstalledModel] = {}
    downloader = ModelDownloader(models_dir)
    for entry in catalog.entries:
        path = downloader.local_path(entry)  # whole files only (a partial one is not a model yet)
        if path is not None:
            seen[path.resolve()] = InstalledModel(entry.display_name, path)
    candidates = sorted(models_dir.glob("*.gguf")) if models_dir.is_dir() else []
    for path in candidates:
        if path.is_file() and path.resolve() not in seen:
            seen[path.resolve()] = InstalledModel(path.stem, path)
    for model in found:
        if model.path.resolve() not in seen:
            seen[model.path.resolve()] = InstalledModel(model.name, model.path, model.source)
    for path in map(Path, also):
        if path.is_file() and path.resolve() not in seen:
            seen[path.resolve()] = InstalledModel(path.stem, path, "opened from disk")
    return list(seen.values())


def quantisation(path: Path) -> str:
    """The experts' weight type (what decides size and speed), e.g. "Q4_0"; "" if unreadable."""
    try:
        tensors = read_gguf(path).tensors
    except EngineError:
        return ""
    experts = tensors.get("blk.0.ffn_gate_exps.weight") or next(iter(tensors.values()), None)
    if experts is None:
        return ""
    try:
        return GGMLQuantizationType(experts.ggml_type).name
    except ValueError:
        return f"type {experts.ggml_type}"
