"""The Server settings and the window serving its loaded model to an OpenAI client."""

from __future__ import annotations

import dataclasses
import socket

import openai
from PySide6.QtWidgets import QApplication, QDialog

from app.catalog import GIB, ModelCatalog
from app.hf_token import SERVER_KEY_ACCOUNT, TokenStore
from app.settings import Settings
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
    window = open_window()
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
    window = open_window()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with qtbot.waitSignal(window.problem_shown) as problem:
            window.apply_settings(dataclasses.replace(window.settings, server_enabled=True, server_port=port))
    assert "did not start" in problem.args[0] and "Settings > Server" in problem.args[0]
    assert not window.server.label.isVisible()
