from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import QThread

from app.conversations import ConversationStore
from app.settings import Settings
from ui.engine_worker import EngineThread
from ui.main_window import MainWindow


@pytest.fixture(autouse=True)
def no_qthread_left_running(monkeypatch):
    """Fail a test that leaves a QThread running once its widgets are closed."""
    started: list[QThread] = []
    original_start = QThread.start

    def recording_start(thread, *args, **kwargs):
        started.append(thread)
        return original_start(thread, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield started
    running = [thread.objectName() or repr(thread) for thread in started if thread.isRunning()]
    assert not running, f"threads still running after the test: {running}"


@pytest.fixture
def open_window(qtbot, tiny_model_path, isolated_app_folders):
    """Open a main window over the test's data folder with the tiny model loaded (greedy: reproducible).

    Every window it opened is closed at the end (no_qthread_left_running then checks
    that their threads ended).
    """
    opened = []

    def open_one(**settings_changes) -> MainWindow:
        settings = dataclasses.replace(Settings(context_length=2048, temperature=0.0), **settings_changes)
        engine = EngineThread()
        window = MainWindow(ConversationStore(isolated_app_folders["data"] / "c.sqlite3"), settings, engine)
        qtbot.addWidget(window)
        window.show()
        with qtbot.waitSignal(window.model_changed, timeout=30_000) as loaded:
            window.load_model(str(tiny_model_path))
        assert loaded.args[0] is not None, window.model_label.text()
        opened.append(window)
        return window

    yield open_one
    for window in opened:
        window.close()
