"""File > Models…: every model on this computer and the catalog's others, with what can be done to each.

A row per installed model (size, quantisation, where it lives, whether it is loaded and in
which memory mode) and per catalog model not downloaded yet. Load, Unload, Delete (files in
our own models folder only, after a confirmation; another app's file is that app's to
remove) and Download act on the selected row; "Look again" finds SmallThinker files other
apps downloaded (app/model_discovery.py). The dialog asks; the window acts.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.catalog import CatalogEntry
from app.installed_models import OURS, InstalledModel, quantisation

COLUMNS = ("Model", "Size", "Quantisation", "Where", "Status")


class ModelManager(QDialog):
    load_requested = Signal(str)  # path
    unload_requested = Signal()
    delete_requested = Signal(str)  # path, confirmed
    download_requested = Signal(str)  # catalog id
    rescan_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setAccessibleName("Models")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda _item: self.load_button.click())
        self.load_button = QPushButton("Load")
        self.unload_button = QPushButton("Unload")
        self.delete_button = QPushButton("Delete…")
        self.download_button = QPushButton("Download")
        self.rescan_button = QPushButton("Look for other apps' models")
        self.rescan_button.setToolTip("The Hugging Face cache, LM Studio, Jan, GPT4All and Ollama: used in place")
        self.load_button.clicked.connect(lambda: self.load_requested.emit(str(self._selected().path)))
        self.unload_button.clicked.connect(self.unload_requested)
        self.delete_button.clicked.connect(self._ask_delete)
        self.download_button.clicked.connect(lambda: self.download_requested.emit(self._selected_entry().id))
        self.rescan_button.clicked.connect(self.rescan_requested)
        self.note = QLabel()
        self.note.setWordWrap(True)
        buttons = QHBoxLayout()
        for button in (self.load_button, self.unload_button, self.delete_button, self.download_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.rescan_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, stretch=1)
        layout.addLayout(buttons)
        layout.addWidget(self.note)
        self.resize(900, 380)
        self._rows: list[InstalledModel | CatalogEntry] = []
        self._loaded: Path | None = None

    def show_models(
        self, models: list[InstalledModel], missing: list[CatalogEntry], loaded: str | None, mode: str = ""
    ) -> None:
        """`models` on disk, `missing` catalog models not downloaded, `loaded` the path loaded now."""
        selected = self._selected_key()
        self._loaded = Path(loaded).resolve() if loaded else None
        self._rows = [*models, *missing]
        self.table.setRowCount(len(self._rows))
        for row, item in enumerate(self._rows):
            for column, text in enumerate(self._cells(item, mode)):
                cell = QTableWidgetItem(text)
                if column == 3 and isinstance(item, InstalledModel):
                    cell.setToolTip(str(item.path))
                self.table.setItem(row, column, cell)
        keys = [self._key(item) for item in self._rows]
        self.table.selectRow(keys.index(selected) if selected in keys else 0)
        self._update_buttons()

    def _cells(self, item: InstalledModel | CatalogEntry, mode: str) -> tuple[str, ...]:
        if isinstance(item, CatalogEntry):
            approx = "" if item.size_is_exact else "about "
            return (item.display_name, f"{approx}{item.size_bytes / 1e9:.1f} GB", "Q4_0", "", "Not downloaded")
        try:
            nbytes = item.path.stat().st_size
            size = f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"
        except OSError:
            size = "missing"
        loaded = self._loaded is not None and item.path.resolve() == self._loaded
        status = f"Loaded ({mode})" if loaded and mode else ("Loaded" if loaded else "")
        where = str(item.path.parent) if item.source == OURS else item.source
        return (item.name, size, quantisation(item.path), where, status)

    @staticmethod
    def _key(item) -> str:
        return str(item.path) if isinstance(item, InstalledModel) else f"catalog:{item.id}"

    def _selected_key(self) -> str | None:
        row = self.table.currentRow()
        return self._key(self._rows[row]) if 0 <= row < len(self._rows) else None

    def _selected(self) -> InstalledModel | None:
        row = self.table.currentRow()
        item = self._rows[row] if 0 <= row < len(self._rows) else None
        return item if isinstance(item, InstalledModel) else None

    def _selected_entry(self) -> CatalogEntry | None:
        row = self.table.currentRow()
        item = self._rows[row] if 0 <= row < len(self._rows) else None
        return item if isinstance(item, CatalogEntry) else None

    def select(self, name: str) -> None:
        for row, item in enumerate(self._rows):
            if (item.name if isinstance(item, InstalledModel) else item.display_name) == name:
                self.table.selectRow(row)
                return

    def _update_buttons(self) -> None:
        model, entry = self._selected(), self._selected_entry()
        loaded = model is not None and self._loaded is not None and model.path.resolve() == self._loaded
        self.load_button.setEnabled(model is not None and not loaded)
        self.unload_button.setEnabled(self._loaded is not None)
        self.download_button.setEnabled(entry is not None)
        self.delete_button.setEnabled(model is not None and model.deletable)
        if model is not None and not model.deletable:
            self.delete_button.setToolTip(f"This file belongs to {model.source}: remove it there")
        else:
            self.delete_button.setToolTip("Delete the file from the models folder")

    def _ask_delete(self) -> None:
        model = self._selected()
        if model is None or not model.deletable:
            return
        question = f"Delete {model.name} ({model.path.name}) from the disk? It can be downloaded again."
        if QMessageBox.question(self, "Delete model", question) == QMessageBox.StandardButton.Yes:
            self.delete_requested.emit(str(model.path))

    def show_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
