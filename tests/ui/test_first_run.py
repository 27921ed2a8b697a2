"""First run: no model yet. Download one from the (fake) Hub with visible progress, then chat."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from app.catalog import ModelCatalog
from app.conversations import ConversationStore
from app.settings import Settings
from tests.app.fake_hub import FakeHub
from ui.engine_worker import EngineThread
from ui.main_window import MainWindow


def test_first_run_downloads_the_recommended_model_then_chats(
    qtbot, tiny_model_path, isolated_app_folders, monkeypatch
):
    entry = ModelCatalog.load().get("4b")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        hub.add_file(entry.repo_id, entry.filename, tiny_model_path.read_bytes())  # the tiny model, under the 4B's name
        settings = Settings(temperature=0.0, max_tokens=16, context_length=2048)
        window = MainWindow(ConversationStore(isolated_app_folders["data"] / "c.sqlite3"), settings, EngineThread())
        qtbot.addWidget(window)
        window.show()
        page = window.first_run
        assert window.pages.currentWidget() is page
        assert "Recommended:" in page.reason.text() and "GiB of RAM" in page.reason.text()
        page.model_choice.setCurrentIndex(page.model_choice.findData("4b"))
        progress = []
        window.downloads.worker.progress.connect(lambda p: progress.append(p.phase))
        with qtbot.waitSignal(window.model_changed, timeout=60_000) as loaded:
            qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
        assert loaded.args[0] is not None, page.status.text()
        assert "downloading" in progress and "verifying" in progress
        assert (isolated_app_folders["data"] / "models" / entry.filename).is_file()
        assert window.pages.currentIndex() == 1
        with qtbot.waitSignal(window.answer_finished, timeout=60_000) as done:
            window.send("Hello after the download")
        assert done.args[0].stats.tokens_out == 16
        window.close()
    assert not window.engine.thread.isRunning() and not window.downloads.thread.isRunning()


def test_a_failed_download_is_explained_on_the_page(qtbot, isolated_app_folders, monkeypatch):
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)  # the Hub has no such repository
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        window = MainWindow(ConversationStore(isolated_app_folders["data"] / "c.sqlite3"), Settings(), EngineThread())
        qtbot.addWidget(window)
        with qtbot.waitSignal(window.downloads.worker.failed, timeout=30_000):
            qtbot.mouseClick(window.first_run.download_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "not found on Hugging Face" in window.first_run.status.text())
        assert window.first_run.download_button.text() == "Download"
        window.close()


def test_pause_keeps_what_was_downloaded_and_download_resumes(
    qtbot, tiny_model_path, isolated_app_folders, monkeypatch
):
    entry = ModelCatalog.load().get("4b")
    payload = tiny_model_path.read_bytes() * 12  # about 11 MB: several 1 MB chunks
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        hub.add_file(entry.repo_id, entry.filename, payload)
        hub.state.seconds_per_mb = 0.05
        window = MainWindow(ConversationStore(isolated_app_folders["data"] / "c.sqlite3"), Settings(), EngineThread())
        qtbot.addWidget(window)
        page = window.first_run
        page.model_choice.setCurrentIndex(page.model_choice.findData("4b"))
        page.progress.valueChanged.connect(lambda _value: page.download_button.click() if page.downloading else None)
        with qtbot.waitSignal(window.downloads.worker.cancelled, timeout=30_000):
            qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)  # Download; the first progress pauses
        qtbot.waitUntil(lambda: "resumes" in page.status.text())
        assert page.download_button.text() == "Download"
        page.progress.valueChanged.disconnect()
        with qtbot.waitSignal(window.downloads.worker.finished, timeout=30_000) as finished:
            qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
        assert hub.state.range_starts[-1] > 0  # resumed, not started over
        assert Path(finished.args[0]).read_bytes() == payload
        window.close()
