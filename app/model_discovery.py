"""SmallThinker GGUF files other apps already downloaded, used where they are (no 2.5-12 GB copy).

Where each keeps its models (all under the home folder, as those apps do by default):
- the Hugging Face cache, through huggingface_hub's own cache scan (`scan_cache_dir`);
- LM Studio: ~/.lmstudio/models and ~/.cache/lm-studio/models (publisher/repo/file.gguf);
- Jan: ~/jan/models and its data folder's models;
- GPT4All: its data folder (.gguf files side by side);
- Ollama: ~/.ollama/models, whose model files are content-addressed blobs named by a
  manifest (manifests/<registry>/<namespace>/<name>/<tag>): a blob is taken when its
  manifest's name says SmallThinker, and its GGUF header confirms it.

A file counts when its name (or Ollama's model name) mentions SmallThinker and its GGUF
header says `general.architecture = smallthinker` (read from the first bytes only); the
window's checks run again when one is loaded, like any file.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_NAME = "smallthinker"
_OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"


@dataclass(frozen=True)
class FoundModel:
    path: Path
    source: str  # "Hugging Face cache", "LM Studio", "Jan", "GPT4All", "Ollama"
    name: str  # what that app calls it


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def app_folders(home: Path | None = None) -> dict[str, list[Path]]:
    home = home or _home()
    data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return {
        "LM Studio": [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"],
        "Jan": [
            home / "jan" / "models",
            data / "Jan" / "data" / "models",
            home / "Library/Application Support/Jan/data/models",
        ],
        "GPT4All": [data / "nomic.ai" / "GPT4All", home / "Library/Application Support/nomic.ai/GPT4All"],
    }


def is_smallthinker_gguf(path: Path) -> bool:
    """Whether the file's GGUF header names the smallthinker architecture (first KB only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if len(head) < 24 or head[:4] != b"GGUF":
        return False
    # The architecture key is by convention the first metadata pair: read it when it is.
    offset = 4 + 4 + 8 + 8  # magic, version, tensor count, metadata count
    try:
        (key_length,) = struct.unpack_from("<Q", head, offset)
        key = head[offset + 8 : offset + 8 + key_length].decode("utf-8", "replace")
        offset += 8 + key_length
        (value_type,) = struct.unpack_from("<I", head, offset)
        if key != "general.architecture" or value_type != 8:  # 8: string
            return b"smallthinker" in head  # some other order: the name is among the first keys
        (value_length,) = struct.unpack_from("<Q", head, offset + 4)
        value = head[offset + 12 : offset + 12 + value_length].decode("utf-8", "replace")
    except struct.error:
        return False
    return value == "smallthinker"


def _named(path: Path) -> bool:
    return _NAME in str(path).lower()


def find_in_folders(folders: dict[str, list[Path]]) -> list[FoundModel]:
    found = []
    for source, roots in folders.items():
        for root in roots:
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*.gguf")):
                if path.is_file() and _named(path.relative_to(root)) and is_smallthinker_gguf(path):
                    found.append(FoundModel(path, source, path.stem))
    return found


def find_in_hf_cache(cache_dir: Path | None = None) -> list[FoundModel]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    except (OSError, ValueError) as exc:
        log.warning("could not scan the Hugging Face cache: %s", exc)
        return []
    found = []
    for repo in cache.repos:
        for revision in repo.revisions:
            for file in revision.files:
                path = Path(file.file_path)
                named = path.suffix.lower() == ".gguf" and _named(Path(repo.repo_id) / path.name)
                if named and is_smallthinker_gguf(path):
                    found.append(FoundModel(path, "Hugging Face cache", f"{repo.repo_id}/{path.name}"))
    return found


def find_in_ollama(models_dir: Path | None = None) -> list[FoundModel]:
    root = models_dir or Path(os.environ.get("OLLAMA_MODELS") or _home() / ".ollama" / "models")
    manifests = root / "manifests"
    if not manifests.is_dir():
        return []
    found = []
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        name = "/".join(manifest.relative_to(manifests).parts[-2:]).replace("/", ":")
        if not _named(Path(name)):
            continue
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
        except (OSError, ValueError, AttributeError):
            continue
        for layer in layers:
            digest = str(layer.get("digest", "")) if isinstance(layer, dict) else ""
            if layer.get("mediaType") == _OLLAMA_MODEL_LAYER and digest.startswith("sha256:"):
                blob = root / "blobs" / digest.replace(":", "-")
                if blob.is_file() and is_smallthinker_gguf(blob):
                    found.append(FoundModel(blob, "Ollama", name))
    return found


def find_elsewhere(home: Path | None = None) -> list[FoundModel]:
    """Every SmallThinker GGUF other apps keep, each file once."""
    candidates = find_in_hf_cache() + find_in_folders(app_folders(home)) + find_in_ollama()
    seen, unique = set(), []
    for model in candidates:
        key = model.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(model)
    return unique
