"""The models the app offers, read from resources/models.json (data, not code)."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

from app.errors import CatalogError
from app.paths import resources_dir

GIB = 1 << 30
_NEVER = "*.powerinfer.gguf"  # only runs in PowerInfer's own fork


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    display_name: str
    description: str
    repo_id: str
    filename: str | None  # exact file name where known
    file_pattern: str | None  # else a pattern over the repository's files
    size_bytes: int
    size_is_exact: bool
    context_length: int
    default_context: int
    kv_bytes_per_token: int
    kv_window_bytes: int
    min_budget_gib: float

    def kv_bytes(self, n_ctx: int | None = None) -> int:
        return (n_ctx or self.default_context) * self.kv_bytes_per_token + self.kv_window_bytes

    def pick_file(self, repo_files: list[str]) -> str | None:
        """The file to download among `repo_files`; None when none fits."""
        if self.filename:
            return self.filename if self.filename in repo_files else None
        pattern = (self.file_pattern or "").lower()  # Hub file names vary in case

        def fits(name: str) -> bool:
            return fnmatch.fnmatchcase(name.lower(), pattern) and not fnmatch.fnmatchcase(name.lower(), _NEVER)

        candidates = sorted(f for f in repo_files if fits(f))
        return candidates[0] if candidates else None


class ModelCatalog:
    def __init__(self, entries: list[CatalogEntry]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: Path | None = None) -> ModelCatalog:
        path = path or resources_dir() / "models.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = [CatalogEntry(**{k: v for k, v in m.items() if not k.startswith("_")}) for m in data["models"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CatalogError(f"the model catalog {path} is unreadable: {exc}") from exc
        for entry in entries:
            if not (entry.filename or entry.file_pattern):
                raise CatalogError(f"catalog entry {entry.id!r} names neither a file nor a pattern")
        return cls(entries)

    def get(self, model_id: str) -> CatalogEntry:
        for entry in self.entries:
            if entry.id == model_id:
                return entry
        known = ", ".join(e.id for e in self.entries)
        raise CatalogError(f"no model {model_id!r} in the catalog; known: {known}")
