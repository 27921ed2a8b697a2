"""The Server settings and the window serving its loaded model to an OpenAI client."""

from __future__ import annotations

import dataclasses
import socket

import openai
from PySide6.QtWidgets import QApplication, QDialog

from app.catalog import GIB, ModelCatalog
from app.conversations import ConversationStore
from app.hf_token import REMOTE_KEY_ACCOUNT, SERVER_KEY_ACCOUNT, TokenStore
from app.server.config import ServerSettings
from app.server.host import EngineHost
from app.server.runner import RunningServer
from app.settings import Settings
from engine.config import EngineConfig
from engine.engine import Engine
from ui.engine_worker import EngineThread
from ui.main_window import MainWindow
from ui.settings_dialog import SettingsDialog


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_tab_asks_for_a_key_before_listening_on_the_network(qtbot):
    dialog = SettingsDialog(Settings(), ModelCatalog.load(), total_ram_bytes=16 * GIB, token=None)
    qtbot.addWidget(dialog)
    dialog.server_enabled.setChecked(True)
    dialog.server_port.setValue(9123)
    assert dialog.server_url.text() == "http://127.0.0.1:9123/v1"
    dialog.copy_url.click()
    assert QApplication.clipboard().text() == "http://127.0.0.1:9123/v1"
    dialog.server_network.setChecked(True)
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.tabs.tabText(dialog.tabs.currentIndex()) == "Server"
    assert "Set an API key" in dialog.server_note.text()
    dialog.new_key.click()
    assert len(dialog.server_key_value()) >= 24
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    values = dialog.values()
    assert (values.server_enabled, values.server_port, values.server_on_network) == (True, 9123, True)


def test_the_window_serves_its_model_and_shows_when_the_server_answers(qtbot, open_window, memory_keyring):
    window = open_window(max_tokens=16)
    port = _free_port()
    states = []
    window.engine.worker.host_changed.connect(states.append)
    window.apply_settings(dataclasses.replace(window.settings, server_enabled=True, server_port=port), server_key="k1")
    assert TokenStore(SERVER_KEY_ACCOUNT).load() == "k1"  # the key went to the keyring only
    assert window.server.label.isVisible() and f":{port}" in window.server.label.text()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k1", max_retries=0, timeout=60)
    (model,) = client.models.list()
    answer = client.chat.completions.create(
        model=model.id, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
    )
    assert answer.choices[0].message.content
    qtbot.waitUntil(lambda: any(s.busy_with == "server" for s in states) and states[-1].busy_with is None)
    # The chat still answers after the server did (they take turns at the one engine).
    with qtbot.waitSignal(window.engine.worker.answer_done, timeout=30_000):
        window.send("And you?")
    window.apply_settings(dataclasses.replace(window.settings, server_enabled=False))
    assert not window.server.label.isVisible()
    try:
        client.models.list()
        raise AssertionError("the server still answers after it was turned off")
    except openai.APIConnectionError:
        pass


def test_a_port_in_use_is_said_and_the_window_goes_on(qtbot, open_window, memory_keyring):
    window = open_window(max_tokens=16)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with qtbot.waitSignal(window.problem_shown) as problem:
            window.apply_settings(dataclasses.replace(window.settings, server_enabled=True, server_port=port))
    assert "did not start" in problem.args[0] and "Settings > Server" in problem.args[0]
    assert not window.server.label.isVisible()


def _window(qtbot, folders, settings: Settings) -> MainWindow:
    window = MainWindow(ConversationStore(folders["data"] / "c.sqlite3"), settings, EngineThread())
    qtbot.addWidget(window)
    window.show()
    return window


def test_the_window_answers_through_another_server(qtbot, tiny_model_path, isolated_app_folders, memory_keyring):
    host = EngineHost()
    with Engine(tiny_model_path, EngineConfig(n_ctx=1024)) as engine:
        host.set_engine(engine, "tiny")
        with RunningServer(host, ServerSettings(port=0, api_key="s3")) as server:
            TokenStore(REMOTE_KEY_ACCOUNT).save("s3")
            settings = Settings(temperature=0.0, context_length=1024, remote_enabled=True, remote_url=server.base_url)
            window = _window(qtbot, isolated_app_folders, settings)
            with qtbot.waitSignal(window.model_changed, timeout=30_000) as connected:
                window.start_engine()
            assert connected.args[0].memory_mode == "remote"
            assert f"tiny · answered by the server at {server.base_url}" == window.model_label.text()
            with qtbot.waitSignal(window.answer_finished, timeout=30_000) as done:
                window.send("Hello there")
            assert done.args[0].text and server.activity.served >= 1
            qtbot.waitUntil(lambda: "tokens/s" in window.speed_label.text())  # the speed, from the stream
            qtbot.waitUntil(lambda: window.memory_label.text() == "")  # no local memory figures
            # Turned off, with no local model on disk: the welcome page again.
            with qtbot.waitSignal(window.model_changed, timeout=30_000) as off:
                window.apply_settings(dataclasses.replace(window.settings, remote_enabled=False))
            assert off.args[0] is None and window.pages.currentIndex() == 0
            window.close()


def test_an_unreachable_server_is_said_in_the_window(qtbot, isolated_app_folders, memory_keyring):
    settings = Settings(remote_enabled=True, remote_url="http://127.0.0.1:1/v1")
    window = _window(qtbot, isolated_app_folders, settings)
    with qtbot.waitSignal(window.model_changed, timeout=30_000) as failed:
        window.start_engine()
    assert failed.args[0] is None
    assert "cannot reach the server at http://127.0.0.1:1/v1: is it running" in window.model_label.text()
    window.close()


def test_an_unreachable_server_leaves_the_local_model_answering(qtbot, open_window, memory_keyring):
    window = open_window(max_tokens=16)
    loaded = window.model
    with qtbot.waitSignal(window.problem_shown, timeout=30_000) as refused:
        window.apply_settings(
            dataclasses.replace(window.settings, remote_enabled=True, remote_url="http://127.0.0.1:1/v1")
        )
    assert "cannot reach the server" in refused.args[0] and refused.args[0].endswith("is still loaded.")
    assert window.model == loaded
    with qtbot.waitSignal(window.answer_finished, timeout=30_000):
        window.send("Still here?")
