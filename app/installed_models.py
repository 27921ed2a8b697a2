"""The models this computer has: the catalog's downloaded ones, other GGUF files in the models
folder, and the file loaded last wherever it lives. For the window's model switcher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.catalog import ModelCatalog
from app.downloads import ModelDownloader


@dataclass(frozen=True)
class InstalledModel:
    name: str  # the catalog's display name, else the file's name without .gguf
    path: Path


def installed_models(models_dir: Path, catalog: ModelCatalog, also: list[Path] = ()) -> list[InstalledModel]:
    """Each file once, the catalog's first; a file named in `also` only if it exists."""
    found: dict[Path, InstalledModel] = {}
    downloader = ModelDownloader(models_dir)
    for entry in catalog.entries:
        path = downloader.local_path(entry)  # whole files only (a partial one is not a model yet)
        if path is not None:
            found[path.resolve()] = InstalledModel(entry.display_name, path)
    candidates = sorted(models_dir.glob("*.gguf")) if models_dir.is_dir() else []
    for path in [*candidates, *also]:
        path = Path(path)
        if path.is_file() and path.resolve() not in found:
            found[path.resolve()] = InstalledModel(path.stem, path)
    return list(found.values())
