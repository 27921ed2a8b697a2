"""File > Models…: what is installed and where, load, unload, delete (ours only, confirmed), download."""

from __future__ import annotations

import shutil

from PySide6.QtWidgets import QMessageBox

from app.model_discovery import FoundModel


def _rows(manager):
    table = manager.table
    return [tuple(table.item(r, c).text() for c in range(table.columnCount())) for r in range(table.rowCount())]


def test_the_manager_lists_models_with_size_quantisation_place_and_status(
    qtbot, open_window, tmp_path, tiny_model_path
):
    window = open_window()
    elsewhere = tmp_path / "lmstudio" / "SmallThinker-other.gguf"
    elsewhere.parent.mkdir()
    shutil.copy(tiny_model_path, elsewhere)
    window._found_models([FoundModel(elsewhere, "LM Studio", "SmallThinker-other")])
    manager = window.open_model_manager()
    rows = _rows(manager)
    loaded = next(r for r in rows if r[0] == tiny_model_path.stem)
    assert loaded[2] == "Q4_0" and loaded[3] == "opened from disk" and loaded[4].startswith("Loaded (")
    assert ("SmallThinker-other", "1 MB", "Q4_0", "LM Studio", "") in rows
    assert ("SmallThinker 4B", "2.5 GB", "Q4_0", "", "Not downloaded") in rows
    assert "Found 1 SmallThinker file(s) from LM Studio: used where they are" in manager.note.text()
    manager.select("SmallThinker-other")
    assert manager.load_button.isEnabled() and not manager.delete_button.isEnabled()  # LM Studio's to remove
    assert "belongs to LM Studio" in manager.delete_button.toolTip()
    with qtbot.waitSignal(window.model_changed, timeout=30_000) as switched:
        manager.load_button.click()
    assert switched.args[0].path == str(elsewhere)
    assert next(r for r in _rows(manager) if r[0] == "SmallThinker-other")[4].startswith("Loaded")
    manager.select("SmallThinker 4B")
    assert manager.download_button.isEnabled() and not manager.load_button.isEnabled()


def test_unload_and_delete_a_model_of_our_folder(qtbot, open_window, tiny_model_path, monkeypatch):
    window = open_window()
    ours = window.settings.models_path() / "SmallThinker-mine.gguf"
    ours.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_model_path, ours)
    with qtbot.waitSignal(window.model_changed, timeout=30_000):
        window.load_model(str(ours))
    manager = window.open_model_manager()
    manager.select("SmallThinker-mine")
    assert manager.delete_button.isEnabled() and manager.unload_button.isEnabled()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    manager.delete_button.click()
    assert ours.exists()  # not confirmed: nothing deleted
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    manager.delete_button.click()
    assert not ours.exists() and window.model is None  # unloaded first, then deleted
    assert all(r[0] != "SmallThinker-mine" for r in _rows(manager))
    assert not manager.unload_button.isEnabled()
    window.delete_model(str(tiny_model_path))  # outside the models folder: refused with the reason
    assert tiny_model_path.exists()
