"""The user's settings: one typed dataclass with defaults and bounds, saved atomically.

A missing file means defaults. A corrupt one is logged, kept aside as
`settings.json.corrupt` for inspection, and replaced by defaults; a value out of its
bounds is clamped. The Hugging Face token is never here (see app.hf_token).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import AppError
from app.paths import config_dir, default_models_dir

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
THEMES = ("system", "light", "dark")
KV_TYPES = ("f16", "q8_0")


@dataclass(frozen=True)
class Settings:
    threads: int = field(default=0, metadata={"bounds": (0, 256)})  # 0: automatic
    context_length: int = field(default=8192, metadata={"bounds": (512, 131072)})
    temperature: float = field(default=0.6, metadata={"bounds": (0.0, 2.0)})
    top_p: float = field(default=0.95, metadata={"bounds": (0.01, 1.0)})
    top_k: int = field(default=20, metadata={"bounds": (0, 1000)})
    max_tokens: int = field(default=1024, metadata={"bounds": (1, 32768)})
    system_prompt: str = "You are a helpful assistant."
    memory_budget_gib: float = field(default=0.0, metadata={"bounds": (0.0, 1024.0)})  # 0: automatic
    # the slowest predicted speed at which a model is offered in memory-budget mode
    min_usable_tps: float = field(default=5.0, metadata={"bounds": (0.5, 100.0)})
    kv_cache_type: str = field(default="f16", metadata={"choices": KV_TYPES})
    theme: str = field(default="system", metadata={"choices": THEMES})
    font_size: int = field(default=11, metadata={"bounds": (6, 32)})
    models_dir: str = ""  # empty: the default folder
    model_path: str = ""  # the model last loaded
    # The OpenAI-compatible server over the loaded model (app/server/); its API key is in
    # the keyring (app/hf_token.py's store), never here.
    server_enabled: bool = False
    server_port: int = field(default=8321, metadata={"bounds": (1024, 65535)})
    server_on_network: bool = False  # listen on every interface, not only this computer's
    # Answer through another OpenAI-compatible server instead of a local model (app/remote_engine.py);
    # its API key is in the keyring too.
    remote_enabled: bool = False
    remote_url: str = ""  # e.g. http://192.168.1.20:8321/v1
    remote_model: str = ""  # empty: the first model the server lists

    # Changing these means loading the model again.
    RELOAD_FIELDS = ("threads", "context_length", "memory_budget_gib", "kv_cache_type", "model_path")

    def models_path(self) -> Path:
        """Where models are kept: the chosen folder, else the default one."""
        return Path(self.models_dir) if self.models_dir else default_models_dir()

    REMOTE_FIELDS = ("remote_enabled", "remote_url", "remote_model")

    def remote_changed(self, other: Settings) -> bool:
        return any(getattr(self, name) != getattr(other, name) for name in self.REMOTE_FIELDS)

    def needs_reload(self, other: Settings) -> bool:
        return any(getattr(self, name) != getattr(other, name) for name in self.RELOAD_FIELDS)

    def checked(self) -> Settings:
        """A copy with every value inside its bounds or choices."""
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "bounds" in f.metadata:
                low, high = f.metadata["bounds"]
                clamped = type(f.default)(min(max(value, low), high))
                if clamped != value:
                    log.warning("setting %s=%r is outside %s..%s; using %r", f.name, value, low, high, clamped)
                    changes[f.name] = clamped
            elif "choices" in f.metadata and value not in f.metadata["choices"]:
                log.warning("setting %s=%r is not one of %s; using %r", f.name, value, f.metadata["choices"], f.default)
                changes[f.name] = f.default
        return dataclasses.replace(self, **changes) if changes else self


class SettingsError(AppError, OSError):
    """The settings could not be saved; the message says where and why."""


def settings_path() -> Path:
    return config_dir() / "settings.json"


def _from_dict(data: dict) -> Settings:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values = {}
    for name, value in data.items():
        f = fields.get(name)
        if f is None:
            continue  # a setting from another version
        expected = type(f.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            log.warning("setting %s has the wrong type (%s); using the default", name, type(value).__name__)
            continue
        values[name] = value
    return Settings(**values).checked()


def load_settings(path: Path | None = None, problems: list[str] | None = None) -> Settings:
    """The saved settings, or the defaults. When the file cannot be used, it is kept aside as
    settings.json.corrupt and a sentence for the user is appended to `problems`."""
    path = path or settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("values"), dict):
            raise ValueError("not a settings object")
        return _from_dict(data["values"])
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested very deeply
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc) or type(exc).__name__
        log.error("settings file %s is unreadable (%s); using defaults", path, reason)
        kept = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, kept)
            where = f"The old file was kept as {kept}."
        except OSError:
            where = f"The file {path} was left as it is."
        if problems is not None:
            problems.append(
                f"Your settings could not be read ({reason}), so the defaults are in use: choose your model "
                f"and settings again. {where}"
            )
        return Settings()


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write atomically: a crash mid-save leaves the previous file intact."""
    path = path or settings_path()
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump({"schema_version": SCHEMA_VERSION, "values": values}, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SettingsError(
            f"Settings could not be saved to {path}: {exc.strerror or exc}. They apply until you quit; "
            "check that the folder is writable and the disk not full."
        ) from None
