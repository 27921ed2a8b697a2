"""The settings dialog round-trips, the token goes to the keyring only, reloads are confirmed."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import QApplication

from app.catalog import GIB, ModelCatalog
from app.hf_token import TokenStore
from app.settings import Settings, load_settings, settings_path
from ui.settings_dialog import SettingsDialog


def test_the_dialog_shows_and_returns_every_setting(qtbot):
    start = Settings(temperature=0.3, theme="dark", context_length=4096, system_prompt="Hi")
    dialog = SettingsDialog(start, ModelCatalog.load(), total_ram_bytes=16 * GIB, token=None)
    qtbot.addWidget(dialog)
    assert dialog.values() == start  # unchanged in, unchanged out
    dialog.temperature.setValue(0.9)
    dialog.top_k.setValue(40)
    dialog.system_prompt.setPlainText("Answer in French.")
    dialog.kv_type.setCurrentText("q8_0")
    dialog.font_size.setValue(14)
    dialog.memory.set_budget_gib(1)
    # No speed prediction yet (the window sends it when computed): what fits is said meanwhile.
    assert "SmallThinker 4B runs in memory-budget mode" in dialog.memory.figure_text()
    changed = dialog.values()
    assert (changed.temperature, changed.top_k, changed.system_prompt) == (0.9, 40, "Answer in French.")
    assert (changed.kv_cache_type, changed.font_size, changed.memory_budget_gib) == ("q8_0", 14, 1.0)


def test_the_kv_cache_choice_shows_its_memory_at_the_chosen_context(qtbot):
    catalog = ModelCatalog.load()
    dialog = SettingsDialog(Settings(context_length=4096), catalog, total_ram_bytes=16 * GIB, token=None)
    qtbot.addWidget(dialog)
    small = catalog.get("4b")
    assert f"{small.kv_bytes(4096) >> 20} MiB (4B)" in dialog.kv_label.text()
    dialog.context_length.setValue(16384)
    text = dialog.kv_label.text()
    assert f"At 16,384 tokens f16 takes {small.kv_bytes(16384) >> 20} MiB (4B)" in text
    assert f"q8_0 {round(small.kv_bytes(16384) * 34 / 64) >> 20} MiB (4B)" in text and "slower" in text


def test_the_budget_slider_notes_where_a_budget_cannot_be_kept(qtbot, monkeypatch):
    from engine.experts import page_control

    monkeypatch.setattr(page_control, "SUPPORTED", False)  # as on macOS and Windows
    dialog = SettingsDialog(Settings(), ModelCatalog.load(), total_ram_bytes=16 * GIB, token=None)
    qtbot.addWidget(dialog)
    dialog.memory.set_budget_gib(2)
    assert "not enforced" in dialog.memory.platform_note.text() and not dialog.memory.platform_note.isHidden()


def test_applying_saves_settings_and_reloads_the_model_when_confirmed(qtbot, open_window, memory_keyring):
    window = open_window(max_tokens=8)
    new = dataclasses.replace(window.settings, context_length=1024, theme="dark", font_size=13)
    with qtbot.waitSignal(window.model_changed, timeout=30_000) as reloaded:
        window.apply_settings(new, token="hf_secret_value", reload_now=True)
    assert reloaded.args[0].context_length == 1024  # the model was loaded again with the new context
    assert load_settings() == new
    assert TokenStore().load() == "hf_secret_value"
    assert "hf_secret_value" not in settings_path().read_text(encoding="utf-8")
    assert QApplication.font().pointSize() == 13
    assert QApplication.palette().window().color().name() == "#202124"  # dark
    window.apply_settings(dataclasses.replace(new, theme="system", font_size=11), reload_now=False)


def test_changes_that_need_no_reload_apply_at_once(qtbot, open_window):
    window = open_window(max_tokens=8)
    loaded = window.model
    window.apply_settings(dataclasses.replace(window.settings, temperature=0.0, max_tokens=5))
    assert window.model is loaded  # no reload, no question asked
    with qtbot.waitSignal(window.answer_finished, timeout=60_000) as done:
        window.send("Short answer please")
    assert done.args[0].stats.tokens_out == 5


def test_every_unobvious_control_is_explained_and_reset_restores_the_defaults(qtbot):
    from PySide6.QtWidgets import QLabel

    from ui.settings_dialog import EXPLANATIONS

    mine = Settings(
        temperature=1.1, top_k=3, context_length=2048, theme="dark", font_size=16, server_enabled=True,
        model_path="/models/a.gguf", models_dir="/models",
    )  # fmt: skip
    dialog = SettingsDialog(mine, ModelCatalog.load(), total_ram_bytes=16 * GIB, token="hf_x")
    qtbot.addWidget(dialog)
    for name, text in EXPLANATIONS.items():
        note = dialog.findChild(QLabel, f"explains-{name}")
        assert note is not None and note.text() == text, name
    assert dialog.temperature.toolTip() == EXPLANATIONS["temperature"]
    dialog.reset_button.click()
    # Defaults again, but which model, where models live and the token are kept.
    assert dialog.values() == Settings(model_path="/models/a.gguf", models_dir="/models")
    assert dialog.token_value() == "hf_x"
