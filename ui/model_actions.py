"""The model manager's actions for the main window: open it, load, unload, delete, download,
and look for SmallThinker files other apps downloaded (off the GUI thread)."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.downloads import ModelDownloader
from app.model_discovery import FoundModel, find_elsewhere
from ui.model_manager import ModelManager


class ModelFinder(QObject):
    """Scans other apps' model folders on a thread of its own (a large Hugging Face cache takes a while)."""

    found = Signal(object)  # list[FoundModel]

    def scan(self) -> None:
        threading.Thread(target=lambda: self.found.emit(find_elsewhere()), name="model-finder", daemon=True).start()


class ModelActions:
    """Mixed into MainWindow, which provides settings, catalog, model, engine, local_model_path,
    refresh_models and the first-run page."""

    found_elsewhere: list[FoundModel] | None  # None until the first scan ends
    model_manager: ModelManager | None

    def open_model_manager(self) -> ModelManager:
        if self.model_manager is None:
            manager = ModelManager(self)
            manager.load_requested.connect(self.load_model)
            manager.unload_requested.connect(self.unload_model)
            manager.delete_requested.connect(self.delete_model)
            manager.download_requested.connect(self._download_from_manager)
            manager.rescan_requested.connect(self.model_finder.scan)
            self.model_manager = manager
        self._fill_model_manager()
        self.model_manager.show()
        self.model_manager.raise_()
        return self.model_manager

    def _fill_model_manager(self) -> None:
        if self.model_manager is None:
            return
        downloader = ModelDownloader(self.settings.models_path())
        missing = [e for e in self.catalog.entries if downloader.local_path(e) is None]
        loaded = self.local_model_path()
        self.model_manager.show_models(self._installed(), missing, loaded, self.model.memory_mode if loaded else "")
        found = self.found_elsewhere
        if found is None:
            self.model_manager.show_note("Looking for SmallThinker files other apps downloaded…")
        else:
            self.model_manager.show_note(_found_note(found))

    def _found_models(self, found: list[FoundModel]) -> None:
        self.found_elsewhere = found
        self.refresh_models()  # the switcher, and the manager when open

    def unload_model(self) -> None:
        """Free the model's memory; the welcome page offers the models again."""
        if self.busy or self.model is None:
            return
        self.model = None
        self.model_label.setText("No model loaded. Choose one above, or use File > Open GGUF file….")
        self.pages.setCurrentIndex(0)
        self.engine.request_unload.emit()
        self.model_changed.emit(None)
        self.refresh_models()

    def delete_model(self, path: str) -> None:
        """Delete a file of our models folder (the dialog asked first); unloaded first if loaded."""
        target = Path(path)
        if target.resolve().parent != self.settings.models_path().resolve():
            self.show_problem(
                "Not deleted", f"{target} is not in the models folder; remove it with the app it came from."
            )
            return
        if self.model is not None and Path(self.model.path).resolve() == target.resolve():
            if self.busy:
                self.statusBar().showMessage("Stop the answer first: the model is in use.", 5000)
                return
            self.unload_model()
        try:
            target.unlink()
        except OSError as exc:
            self.show_problem("Not deleted", f"{target.name} could not be deleted: {exc.strerror or exc}")
            return
        self.statusBar().showMessage(f"Deleted {target.name}.", 5000)
        self.refresh_models()

    def _download_from_manager(self, model_id: str) -> None:
        entry = self.catalog.get(model_id)
        self.model_manager.show_note(
            f"Downloading {entry.display_name}: progress on the welcome page; it loads when done."
        )
        if self.model is None:
            self.pages.setCurrentIndex(0)
        self.first_run.set_downloading(True)
        self._download(model_id)


def _found_note(found: list[FoundModel]) -> str:
    if not found:
        return "No SmallThinker files in the Hugging Face cache, LM Studio, Jan, GPT4All or Ollama."
    names = ", ".join(sorted({m.source for m in found}))
    return f"Found {len(found)} SmallThinker file(s) from {names}: used where they are, not copied."
