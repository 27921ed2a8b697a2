from __future__ import annotations

import dataclasses
import json

from app.settings import Settings, load_settings, save_settings, settings_path


def test_defaults_when_there_is_no_file():
    assert load_settings() == Settings()


def test_settings_round_trip_atomically(isolated_app_folders):
    changed = dataclasses.replace(Settings(), temperature=0.2, theme="dark", system_prompt="Be terse.", threads=2)
    save_settings(changed)
    assert load_settings() == changed
    assert settings_path().parent == isolated_app_folders["config"]
    assert not list(settings_path().parent.glob("*.tmp"))
    assert json.loads(settings_path().read_text())["schema_version"] == 1


def test_a_corrupt_file_is_set_aside_and_defaults_used(caplog):
    settings_path().parent.mkdir(parents=True)
    settings_path().write_text("{ this is not json", encoding="utf-8")
    assert load_settings() == Settings()
    assert "unreadable" in caplog.text
    assert settings_path().with_name("settings.json.corrupt").read_text() == "{ this is not json"


def test_out_of_bounds_and_wrong_types_fall_back_sensibly():
    settings_path().parent.mkdir(parents=True)
    values = {"temperature": 9.5, "top_k": -3, "theme": "purple", "font_size": "big", "unknown": 1, "top_p": 1}
    settings_path().write_text(json.dumps({"schema_version": 1, "values": values}), encoding="utf-8")
    loaded = load_settings()
    assert (loaded.temperature, loaded.top_k, loaded.theme, loaded.font_size, loaded.top_p) == (
        2.0,
        0,
        "system",
        11,
        1.0,
    )


def test_which_changes_need_a_model_reload():
    base = Settings()
    assert base.needs_reload(dataclasses.replace(base, context_length=4096))
    assert base.needs_reload(dataclasses.replace(base, kv_cache_type="q8_0"))
    assert not base.needs_reload(dataclasses.replace(base, temperature=1.0, theme="dark"))


def test_settings_that_cannot_be_read_are_reported_and_kept_aside(isolated_app_folders):
    # issue 17, item 4: a deeply nested file stopped the start (RecursionError); an invalid one
    # was replaced by defaults without a word, and the model path was gone
    settings_path().parent.mkdir(parents=True)
    for text in ("[" * 100_000 + "]" * 100_000, '{"values": 3}'):
        settings_path().write_text(text, encoding="utf-8")
        problems: list[str] = []
        assert load_settings(problems=problems) == Settings()
        assert len(problems) == 1 and "defaults are in use" in problems[0]
        assert f"kept as {settings_path()}.corrupt" in problems[0]
        assert settings_path().with_name("settings.json.corrupt").read_text() == text


def test_settings_that_cannot_be_saved_raise_a_message_not_an_oserror(isolated_app_folders):
    import pytest

    from app.settings import SettingsError

    folder = settings_path().parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the config folder should be")  # unwritable even for root
    with pytest.raises(SettingsError, match="Settings could not be saved to .*They apply until you quit"):
        save_settings(Settings(temperature=0.1))
