"""The model switcher on the window's top line: every installed model, and "Open a GGUF file…"."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox

from app.installed_models import InstalledModel

_OPEN = "Open a GGUF file…"


class ModelSwitcher(QComboBox):
    model_chosen = Signal(str)  # the path of the model to load
    open_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setAccessibleName("Model")
        self.setToolTip("Switch models (the one chosen loads in place of this one)")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.activated.connect(self._chosen)
        self._current: Path | None = None

    def show_models(self, models: list[InstalledModel], current: str | None) -> None:
        """List `models`, `current` (a path) selected; with nothing loaded, a "Choose a model" line."""
        self.blockSignals(True)
        self.clear()
        self._current = Path(current).resolve() if current else None
        if self._current is None:
            self.addItem("Choose a model", None)
        for model in models:
            self.addItem(model.name, str(model.path))
            self.setItemData(self.count() - 1, str(model.path), Qt.ItemDataRole.ToolTipRole)  # where it lives
            if self._current is not None and model.path.resolve() == self._current:
                self.setCurrentIndex(self.count() - 1)
        self.addItem(_OPEN, None)
        self.blockSignals(False)

    def _chosen(self, index: int) -> None:
        path = self.itemData(index)
        if self.itemText(index) == _OPEN:
            self.open_requested.emit()
        elif path and Path(path).resolve() != self._current:
            self.model_chosen.emit(path)
        self._reselect()

    def _reselect(self) -> None:
        """Show the loaded model until the one chosen has loaded (show_models is called then)."""
        for i in range(self.count()):
            data = self.itemData(i)
            if (data and self._current and Path(data).resolve() == self._current) or (not data and i == 0):
                self.setCurrentIndex(i)
                return
