from __future__ import annotations

import os
import subprocess
import sys

from app.conversations import ConversationStore
from app.settings import Settings
from ui.display_check import display_problem, missing_library_message
from ui.engine_worker import EngineThread
from ui.main_window import MainWindow


def test_main_window_opens_without_a_model_and_says_what_to_do(qtbot, isolated_app_folders):
    engine = EngineThread()
    window = MainWindow(ConversationStore(isolated_app_folders["data"] / "c.sqlite3"), Settings(), engine)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.windowTitle() == "SmallThinker Desktop"
    assert "No model loaded" in window.model_label.text()
    window.send("Hello?")
    assert not window.busy and window.input.toPlainText() == "Hello?"  # kept, not lost
    assert "Load a model first" in window.statusBar().currentMessage()
    assert window.pages.currentWidget() is window.first_run
    window.close()
    assert not engine.thread.isRunning() and not window.downloads.thread.isRunning()


def test_no_display_is_reported_in_words(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    message = display_problem()
    assert message is not None and "No display found" in message
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert display_problem() is None


def test_launching_without_a_display_exits_with_a_message_not_an_abort():
    env = {k: v for k, v in os.environ.items() if k not in {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"}}
    done = subprocess.run([sys.executable, "-m", "ui"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "No display found" in done.stderr


def test_a_missing_x11_library_is_named_with_the_package_to_install():
    error = OSError("libxcb-icccm.so.4: cannot open shared object file: No such file or directory")
    message = missing_library_message(error)
    assert "libxcb-icccm.so.4 is missing" in message
    assert "apt-get install" in message and "libxcb-icccm4" in message


def test_self_test_answers_with_a_tiny_model_and_reports_a_broken_one(tmp_path, tiny_model_path):
    def self_test(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # it must set offscreen itself
        return subprocess.run(
            [sys.executable, "-m", "ui", "--self-test", *args], capture_output=True, text=True, timeout=300, env=env
        )

    passed = self_test(str(tiny_model_path))
    assert passed.returncode == 0, passed.stderr[-2000:]
    assert passed.stdout.startswith(f"self-test passed: {tiny_model_path.name} loaded in")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(100))
    failed = self_test(str(broken))
    assert failed.returncode == 1 and "self-test FAILED" in failed.stderr and "broken.gguf" in failed.stderr


def test_settings_that_cannot_be_saved_are_reported_in_the_window(qtbot, isolated_app_folders):
    # issue 17, item 4: a PermissionError traceback on model load, and settings silently not saved
    from dataclasses import replace

    from app.settings import settings_path

    folder = settings_path().parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the config folder should be")
    window = MainWindow(ConversationStore(isolated_app_folders["data"] / "c.sqlite3"), Settings(), EngineThread())
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.problem_shown, timeout=5000) as shown:
        window.apply_settings(replace(window.settings, font_size=14))
    assert "Settings could not be saved" in shown.args[0]
    assert window.settings.font_size == 14  # applied all the same, until the app quits
    assert "Settings could not be saved" in window.statusBar().currentMessage()
    window.close()
