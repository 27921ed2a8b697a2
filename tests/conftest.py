"""Fixtures shared by every test package.

Every test gets its own data and settings folders, so no test reads or writes the
real user's files or another test's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Qt must never try to reach a display in tests; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from engine.synthetic import write_synthetic_model  # noqa: E402
from engine.synthetic_shapes import get_shape  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_app_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    folders = {"data": tmp_path / "data", "config": tmp_path / "config"}
    monkeypatch.setenv("SMALLTHINKER_DATA_DIR", str(folders["data"]))
    monkeypatch.setenv("SMALLTHINKER_CONFIG_DIR", str(folders["config"]))
    return folders


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_model(get_shape("tiny"), tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_swa_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_model(get_shape("tiny-swa"), tmp_path_factory.mktemp("models") / "tiny-swa.gguf")
