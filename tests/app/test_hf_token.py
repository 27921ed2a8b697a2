"""The Hugging Face token lives in the keyring only."""

from __future__ import annotations

import keyring
import keyring.backends.fail

from app.catalog import ModelCatalog
from app.hf_token import TokenStore
from tests.app.fake_hub import FakeHub
from tests.app.test_downloads import PAYLOAD, downloader


def test_token_round_trips_through_the_keyring_and_no_file_holds_it(
    memory_keyring, isolated_app_folders, tmp_path, monkeypatch
):
    secret = "hf_test_token"
    assert TokenStore().save(secret) == "Token saved in the system keyring."
    assert TokenStore().load() == secret  # a new store, as after a restart
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        entry = ModelCatalog.load().get("4b")
        hub.add_file(entry.repo_id, entry.filename, PAYLOAD[:1000])
        hub.state.gated.add(entry.repo_id)
        downloader(isolated_app_folders["data"], token=TokenStore().load()).download(entry)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files, "the download wrote files under the test's folders"
    assert not [p for p in files if secret.encode() in p.read_bytes()]
    assert TokenStore().save("") == "Token removed."
    assert TokenStore().load() is None


def test_without_a_keyring_the_token_is_kept_for_the_session_only():
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        store = TokenStore()
        message = store.save("hf_session_only")
        assert "cannot be saved" in message
        assert store.load() == "hf_session_only"
        assert TokenStore().load() is None  # gone with the session
    finally:
        keyring.set_keyring(previous)
