"""Where the app keeps its files.

Defaults follow each OS's conventions (platformdirs). SMALLTHINKER_DATA_DIR and
SMALLTHINKER_CONFIG_DIR override them, so tests and portable set-ups can point the app
at folders of their own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "SmallThinker"


def data_dir() -> Path:
    """Conversations, downloaded models and other user data."""
    override = os.environ.get("SMALLTHINKER_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """The settings file."""
    override = os.environ.get("SMALLTHINKER_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def resources_dir() -> Path:
    """The `resources/` folder, from a source checkout or a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def default_models_dir() -> Path:
    """Downloaded models, unless the settings name another folder."""
    return data_dir() / "models"
