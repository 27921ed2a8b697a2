"""Details of the window a new user trips over (issue 15's list): each found by hand, each tested."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QFileDialog

from app.settings import Settings
from ui.appearance import apply_appearance
from ui.conversation_dates import DATE_ROLE, when


def _send(qtbot, window, text: str) -> None:
    with qtbot.waitSignal(window.answer_finished, timeout=60_000):
        window.send(text)


def _click(qtbot, window, row: int) -> None:
    rect = window.conversation_list.visualItemRect(window.conversation_list.item(row))
    qtbot.mouseClick(window.conversation_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_the_conversation_open_before_a_new_chat_is_drawn_when_clicked(qtbot, open_window):
    window = open_window()
    _send(qtbot, window, "Tell me about tea")
    assert "Tell me about tea" in window.chat_view.toPlainText()
    window.actions_by_name["New chat"].trigger()
    assert window.chat_view.toPlainText().strip() == ""
    _click(qtbot, window, 0)  # the same conversation as before: it was blank here
    assert "Tell me about tea" in window.chat_view.toPlainText()


def test_typing_goes_to_the_message_box_after_loading_a_new_chat_and_a_switch(qtbot, open_window):
    window = open_window()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.input)  # after the model loaded
    _send(qtbot, window, "First")
    window.search_box.setFocus()
    window.new_chat()
    assert QApplication.focusWidget() is window.input
    window.search_box.setFocus()
    _click(qtbot, window, 0)
    assert QApplication.focusWidget() is window.input


def test_stop_is_enabled_only_while_an_answer_runs_and_esc_clears_the_search(qtbot, open_window):
    window = open_window()
    stop = window.actions_by_name["Stop"]
    assert not stop.isEnabled()
    started = []
    window.engine.worker.text_streamed.connect(lambda _text: started.append(stop.isEnabled()))
    _send(qtbot, window, "Hello")
    assert started and all(started) and not stop.isEnabled()
    window.search_box.setFocus()
    qtbot.keyClicks(window.search_box, "nothing matches this")
    assert window.conversation_list.count() == 0
    qtbot.keyClick(window.search_box, Qt.Key.Key_Escape)
    assert window.search_box.text() == "" and window.conversation_list.count() == 1


def test_the_conversation_list_shows_dates_and_keeps_its_width(qtbot, open_window):
    window = open_window()
    _send(qtbot, window, "Dated")
    item = window.conversation_list.item(0)
    assert item.text() == "Dated" and item.data(DATE_ROLE) > 0 and "Dated" in item.toolTip()
    window.resize(800, 600)
    qtbot.waitUntil(lambda: window.conversation_list.width() >= 180)
    assert window.conversation_list.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff


def test_short_dates():
    from datetime import date, datetime

    today = date(2026, 12, 2)
    stamp = lambda *args: datetime(*args).timestamp()  # noqa: E731
    assert when(stamp(2026, 12, 2, 14, 5), today) == "14:05"
    assert when(stamp(2026, 12, 1, 9, 0), today) == "Yesterday"
    assert when(stamp(2026, 11, 28, 9, 0), today) == "Sat"
    assert when(stamp(2026, 3, 4, 9, 0), today) == "4 Mar"
    assert when(stamp(2025, 3, 4, 9, 0), today) == "4 Mar 2025"


def test_the_first_window_fits_the_screen(qtbot, open_window):
    window = open_window()
    room = window.screen().availableGeometry()
    assert window.width() <= room.width() and window.height() <= room.height()


def _luminance(color: QColor) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())


def test_dark_links_are_readable_and_focus_is_drawn(qtbot):
    apply_appearance(Settings(theme="dark"))
    try:
        palette = QApplication.instance().palette()
        base = _luminance(palette.color(QPalette.ColorRole.Base))
        for role in (QPalette.ColorRole.Link, QPalette.ColorRole.LinkVisited):
            link = _luminance(palette.color(role))
            assert (link + 0.05) / (base + 0.05) >= 4.5, role  # WCAG AA for text
        assert ":focus" in QApplication.instance().styleSheet()
    finally:
        apply_appearance(Settings())


def test_export_suggests_the_home_folder_and_the_menus_have_about_and_quit(qtbot, open_window, monkeypatch):
    window = open_window()
    _send(qtbot, window, "Export me")
    asked = []

    def save_dialog(_parent, _title, suggested, _filter):
        asked.append(suggested)
        return "", ""  # the user cancels

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    window.actions_by_name["Export to Markdown…"].trigger()
    assert asked and Path(asked[0]).parent == Path.home()
    assert "About SmallThinker Desktop" in window.actions_by_name
    window.actions_by_name["Quit"].trigger()
    assert not window.isVisible()


def test_the_status_line_speaks_plainly_and_each_conversation_keeps_its_figures(qtbot, open_window):
    import re

    window = open_window()
    speeds = []
    window.engine.worker.speed_changed.connect(speeds.append)
    _send(qtbot, window, "First conversation")
    assert speeds  # the speed was shown while the answer streamed, not only after
    first = (window.speed_label.text(), window.context_label.text())
    assert re.fullmatch(r"\d+(\.\d)? tokens/s", first[0]) and re.fullmatch(r"context \d+%", first[1])
    assert "of the model's 2,048 tokens" in window.context_label.toolTip()
    window._show_memory()
    assert re.fullmatch(r"memory \d+\.\d GiB", window.memory_label.text())
    assert "KV cache" in window.memory_label.toolTip() and "RSS" not in window.memory_label.text()
    window.new_chat()
    assert window.speed_label.text() == "" and window.context_label.text() == "context 0%"
    _click(qtbot, window, 0)
    assert (window.speed_label.text(), window.context_label.text()) == first


def test_the_model_switcher_lists_the_installed_models_and_loads_the_one_chosen(
    qtbot, open_window, tiny_model_path, tmp_path, monkeypatch
):
    import shutil

    folder = tmp_path / "models"
    folder.mkdir()
    first = Path(shutil.copy(tiny_model_path, folder / "first.gguf"))
    second = Path(shutil.copy(tiny_model_path, folder / "second.gguf"))
    (folder / "notes.txt").write_text("not a model")
    window = open_window(models_dir=str(folder))
    with qtbot.waitSignal(window.model_changed, timeout=30_000):
        window.load_model(str(first))
    switcher = window.model_switcher
    names = [switcher.itemText(i) for i in range(switcher.count())]
    # The two files in the folder, the tiny model loaded before (elsewhere), and Open.
    assert {"first", "second", "tiny"} <= set(names) and names[-1] == "Open a GGUF file…"
    assert switcher.currentText() == "first"
    with qtbot.waitSignal(window.model_changed, timeout=30_000) as switched:
        switcher.activated.emit(names.index("second"))
    assert Path(switched.args[0].path) == second and switcher.currentText() == "second"
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **_kw: asked.append(args[1]) or ("", ""))
    switcher.activated.emit(switcher.count() - 1)  # "Open a GGUF file…": the file dialog, cancelled
    assert asked == ["Open a SmallThinker GGUF file"] and switcher.currentText() == "second"
