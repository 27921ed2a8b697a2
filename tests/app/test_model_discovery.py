"""SmallThinker files other apps downloaded are found where those apps keep them, and only those."""

from __future__ import annotations

import json
import shutil

from app.catalog import ModelCatalog
from app.installed_models import OURS, installed_models, quantisation
from app.model_discovery import app_folders, find_in_folders, find_in_hf_cache, find_in_ollama, is_smallthinker_gguf


def _not_smallthinker(path):
    """A GGUF header of another architecture (llama), under a SmallThinker-looking name."""
    key, value = b"general.architecture", b"llama"
    header = b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1).to_bytes(8, "little")
    header += len(key).to_bytes(8, "little") + key + (8).to_bytes(4, "little") + len(value).to_bytes(8, "little")
    path.write_bytes(header + value)


def test_lm_studio_jan_and_gpt4all_folders_are_searched(tmp_path, tiny_model_path):
    home = tmp_path / "home"
    lm_studio = home / ".lmstudio/models/PowerInfer/SmallThinker-4BA0.6B-Instruct-GGUF"
    lm_studio.mkdir(parents=True)
    shutil.copy(tiny_model_path, lm_studio / "SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf")
    _not_smallthinker(lm_studio / "SmallThinker-but-llama.gguf")
    shutil.copy(tiny_model_path, lm_studio.parent / "unrelated-model.gguf")  # not named SmallThinker: left alone
    gpt4all = home / ".local/share/nomic.ai/GPT4All"
    gpt4all.mkdir(parents=True)
    shutil.copy(tiny_model_path, gpt4all / "smallthinker-21b.Q4_0.gguf")
    found = find_in_folders(app_folders(home))
    assert [(m.source, m.path.name) for m in found] == [
        ("LM Studio", "SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf"),
        ("GPT4All", "smallthinker-21b.Q4_0.gguf"),
    ]
    assert is_smallthinker_gguf(tiny_model_path) and not is_smallthinker_gguf(lm_studio / "SmallThinker-but-llama.gguf")


def test_ollama_blobs_are_found_through_their_manifest(tmp_path, tiny_model_path):
    root = tmp_path / "ollama"
    manifest = root / "manifests/registry.ollama.ai/library/smallthinker/4b-q4_0"
    manifest.parent.mkdir(parents=True)
    layers = [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:aaa"},
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:bbb"},
    ]
    manifest.write_text(json.dumps({"layers": layers}), encoding="utf-8")
    (root / "blobs").mkdir()
    shutil.copy(tiny_model_path, root / "blobs/sha256-bbb")
    other = root / "manifests/registry.ollama.ai/library/llama3/latest"
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({"layers": layers}), encoding="utf-8")
    found = find_in_ollama(root)
    assert [(m.source, m.name, m.path.name) for m in found] == [("Ollama", "smallthinker:4b-q4_0", "sha256-bbb")]


def test_the_hugging_face_cache_is_scanned_with_huggingface_hubs_own_scan(tmp_path, tiny_model_path):
    repo = tmp_path / "hub" / "models--PowerInfer--SmallThinker-4BA0.6B-Instruct-GGUF"
    (repo / "blobs").mkdir(parents=True)
    shutil.copy(tiny_model_path, repo / "blobs" / "0123abcd")
    snapshot = repo / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf").symlink_to("../../blobs/0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40, encoding="utf-8")
    found = find_in_hf_cache(tmp_path / "hub")
    assert [(m.source, m.name) for m in found] == [
        ("Hugging Face cache", "PowerInfer/SmallThinker-4BA0.6B-Instruct-GGUF/SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf")
    ]
    assert find_in_hf_cache(tmp_path / "no-cache-here") == []


def test_found_files_join_the_installed_list_once_and_are_never_ours_to_delete(tmp_path, tiny_model_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_model_path, models / "mine.gguf")
    elsewhere = tmp_path / ".lmstudio/models/x/SmallThinker-copy.gguf"
    elsewhere.parent.mkdir(parents=True)
    shutil.copy(tiny_model_path, elsewhere)
    found = find_in_folders({"LM Studio": [tmp_path / ".lmstudio/models"]})
    listed = installed_models(models, ModelCatalog.load(), [elsewhere], found)
    assert [(m.name, m.source, m.deletable) for m in listed] == [
        ("mine", OURS, True),
        ("SmallThinker-copy", "LM Studio", False),
    ]
    assert quantisation(models / "mine.gguf") == "Q4_0"
