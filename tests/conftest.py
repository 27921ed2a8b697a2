"""Fixtures shared by every test package.

Every test gets its own data and settings folders, so no test reads or writes the
real user's files or another test's.
"""

from __future__ import annotations

import os
from pathlib import Path

import keyring
import keyring.backend
import pytest

# Qt must never try to reach a display in tests; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from engine.synthetic import RouterSkew, get_shape, write_synthetic_model  # noqa: E402


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


@pytest.fixture(scope="session")
def small_moe_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_model(
        get_shape("small-moe"), tmp_path_factory.mktemp("models") / "small-moe.gguf", skew=RouterSkew()
    )


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend for the test: a dict, so nothing can reach a file."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.secrets.get((service, username))

    def set_password(self, service, username, password):
        self.secrets[(service, username)] = password

    def delete_password(self, service, username):
        self.secrets.pop((service, username), None)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)
