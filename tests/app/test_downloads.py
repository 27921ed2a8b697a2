"""Downloads against a fake Hugging Face endpoint on 127.0.0.1 (a real HTTP server)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.catalog import ModelCatalog
from app.downloads import ModelDownloader
from app.errors import (
    AccessDeniedError,
    ChecksumMismatchError,
    DownloadCancelledError,
    DownloadError,
    NotEnoughDiskSpaceError,
    OfflineError,
    RemoteNotFoundError,
)
from tests.app.fake_hub import FakeHub

MB = 1 << 20
# huggingface_hub-style resumes count whole chunks: tens of MB make a resume visible.
PAYLOAD = np.random.default_rng(5).bytes(40 * MB)


@pytest.fixture
def catalog():
    return ModelCatalog.load()


@pytest.fixture
def hub(monkeypatch, tmp_path, catalog):
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        entry = catalog.get("4b")
        fake.add_file(entry.repo_id, entry.filename, PAYLOAD)
        yield fake


def downloader(tmp_path, **kwargs) -> ModelDownloader:
    return ModelDownloader(tmp_path / "models", retry_delay=0.01, **kwargs)


def test_whole_download_is_byte_identical_with_progress(hub, catalog, tmp_path):
    events = []
    path = downloader(tmp_path).download(catalog.get("4b"), progress=events.append)
    assert path == tmp_path / "models" / catalog.get("4b").filename
    assert path.read_bytes() == PAYLOAD
    downloading = [e for e in events if e.phase == "downloading"]
    assert [e.done_bytes for e in downloading] == sorted(e.done_bytes for e in downloading)
    assert downloading[-1].done_bytes == downloading[-1].total_bytes == len(PAYLOAD)
    assert any(e.bytes_per_second > 0 and e.eta_seconds is not None for e in downloading)
    assert events[-1].phase == "verifying" and events[-1].done_bytes == len(PAYLOAD)
    assert not list((tmp_path / "models" / ".partial").iterdir())
    assert hub.state.bytes_sent == len(PAYLOAD)


def test_a_dropped_connection_resumes_without_starting_over(hub, catalog, tmp_path):
    hub.state.drop_after_bytes = 25 * MB
    path = downloader(tmp_path).download(catalog.get("4b"))
    assert path.read_bytes() == PAYLOAD
    assert hub.state.range_starts[0] == 0 and hub.state.range_starts[-1] >= 20 * MB
    assert hub.state.bytes_sent < len(PAYLOAD) + 2 * MB  # only the lost tail was sent again


def test_server_down_half_way_then_a_later_download_resumes(hub, catalog, tmp_path):
    hub.state.drop_after_bytes = 25 * MB
    hub.state.down_after_drop = True
    with pytest.raises(DownloadError, match="download again to resume"):
        downloader(tmp_path).download(catalog.get("4b"))
    assert not (tmp_path / "models" / catalog.get("4b").filename).exists()
    hub.state.down = False
    sent_before = hub.state.bytes_sent
    path = downloader(tmp_path).download(catalog.get("4b"))  # a new downloader, as after a restart
    assert path.read_bytes() == PAYLOAD
    assert hub.state.range_starts[-1] >= 20 * MB
    assert hub.state.bytes_sent - sent_before <= len(PAYLOAD) - 20 * MB


def test_cancel_keeps_the_partial_file_and_the_next_download_resumes(hub, catalog, tmp_path):
    cancel = threading.Event()

    def on_progress(event):
        if event.done_bytes >= 15 * MB:
            cancel.set()

    with pytest.raises(DownloadCancelledError, match="resumes"):
        downloader(tmp_path).download(catalog.get("4b"), progress=on_progress, cancel=cancel)
    path = downloader(tmp_path).download(catalog.get("4b"))
    assert path.read_bytes() == PAYLOAD
    assert hub.state.range_starts[-1] >= 15 * MB


def test_corrupted_payload_is_caught_and_leaves_nothing(hub, catalog, tmp_path):
    hub.state.corrupt = True
    with pytest.raises(ChecksumMismatchError, match="SHA-256"):
        downloader(tmp_path).download(catalog.get("4b"))
    leftovers = [p for p in (tmp_path / "models").rglob("*") if p.is_file()]
    assert leftovers == []


def test_missing_repo_and_missing_file_say_not_found(hub, catalog, tmp_path):
    entry = catalog.get("4b")
    moved = type(entry)(**{**entry.__dict__, "repo_id": "Nobody/Nothing-GGUF"})
    with pytest.raises(RemoteNotFoundError, match="not found on Hugging Face"):
        downloader(tmp_path).download(moved)
    renamed = type(entry)(**{**entry.__dict__, "filename": "other.gguf"})
    with pytest.raises(RemoteNotFoundError, match="not found on Hugging Face"):
        downloader(tmp_path).download(renamed)


def test_gated_repo_without_token_is_refused_and_works_with_one(hub, catalog, tmp_path):
    entry = catalog.get("4b")
    hub.state.gated.add(entry.repo_id)
    with pytest.raises(AccessDeniedError, match="token"):
        downloader(tmp_path).download(entry)
    path = downloader(tmp_path, token=hub.state.valid_token).download(entry)
    assert path.read_bytes() == PAYLOAD


def test_too_little_disk_space_is_refused_before_any_byte(hub, catalog, tmp_path):
    entry = catalog.get("4b")
    hub.state.claimed_sizes[(entry.repo_id, entry.filename)] = 1 << 50  # a petabyte
    with pytest.raises(NotEnoughDiskSpaceError, match="Not enough free disk space"):
        downloader(tmp_path).download(entry)
    assert hub.state.bytes_sent == 0
    assert not [p for p in (tmp_path / "models").rglob("*") if p.is_file()]


def test_offline_uses_a_downloaded_model_and_explains_a_missing_one(hub, catalog, tmp_path, monkeypatch):
    path = downloader(tmp_path).download(catalog.get("4b"))
    requests_before = len(hub.state.range_starts)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert downloader(tmp_path).download(catalog.get("4b")) == path
    assert len(hub.state.range_starts) == requests_before
    with pytest.raises(OfflineError, match="offline"):
        downloader(tmp_path).download(catalog.get("21b"))


def test_an_unreachable_hub_says_offline(catalog, tmp_path, monkeypatch):
    with FakeHub() as fake:
        endpoint = fake.endpoint
    monkeypatch.setenv("HF_ENDPOINT", endpoint)  # the server is gone: connection refused
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(OfflineError, match="Cannot reach Hugging Face"):
        downloader(tmp_path).download(catalog.get("4b"))


def test_the_21b_file_is_found_by_pattern_never_the_powerinfer_one(hub, catalog, tmp_path):
    entry = catalog.get("21b")
    hub.add_file(entry.repo_id, "SmallThinker-21B-A3B-Instruct.Q4_0.powerinfer.gguf", b"x" * 1000)
    hub.add_file(entry.repo_id, "SmallThinker-21B-A3B-Instruct.Q8_0.gguf", b"y" * 1000)
    hub.add_file(entry.repo_id, "SmallThinker-21B-A3B-Instruct.Q4_0.gguf", PAYLOAD[: 3 * MB])
    path = downloader(tmp_path).download(entry)
    assert path.name == "SmallThinker-21B-A3B-Instruct.Q4_0.gguf"
    assert path.read_bytes() == PAYLOAD[: 3 * MB]
    assert downloader(tmp_path).local_path(entry) == path


def test_a_cut_off_file_under_the_model_name_is_not_present_and_is_resumed(hub, catalog, tmp_path):
    # issue 17, item 12: it was reported "ready" by `download` and "downloaded" by `models`
    entry = catalog.get("4b")
    models = tmp_path / "models"
    models.mkdir()
    (models / entry.filename).write_bytes(PAYLOAD[: 15 * MB])  # copied in part, or cut by a full disk
    d = downloader(tmp_path)
    assert d.local_path(entry) is None
    path, reason = d.incomplete_file(entry)
    assert path.name == entry.filename and f"{15 * MB:,} of {entry.size_bytes:,} bytes" in reason
    assert d.download(entry).read_bytes() == PAYLOAD
    assert hub.state.range_starts == [15 * MB] and hub.state.bytes_sent == len(PAYLOAD) - 15 * MB
    assert d.local_path(entry) == models / entry.filename  # recorded as verified at its real size
    with open(models / entry.filename, "r+b") as f:
        f.truncate(30 * MB)  # damaged after the download
    assert d.local_path(entry) is None and "of 41,943,040 bytes" in d.incomplete_file(entry)[1]


def test_the_token_goes_to_the_hub_only_never_to_the_cdn(hub, catalog, tmp_path):
    # issue 17, item 13: the file request to the CDN host carried "Authorization: Bearer hf_..."
    entry = catalog.get("4b")
    hub.state.gated.add(entry.repo_id)
    downloader(tmp_path, token=hub.state.valid_token).download(entry)
    assert hub.state.authorization_seen["hub"] and not hub.state.authorization_seen["cdn"]


def test_two_downloads_of_one_model_at_once_take_turns(hub, catalog, tmp_path):
    # issue 17, item 14: they shared one partial file; one or both failed, 1.9-3x the bytes were sent
    hub.state.seconds_per_mb = 0.01
    entry = catalog.get("4b")
    results, errors, phases = [], [], []

    def run() -> None:
        try:
            results.append(downloader(tmp_path).download(entry, progress=lambda p: phases.append(p.phase)))
        except Exception as exc:  # noqa: BLE001 - any failure of either one fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert results[0].read_bytes() == PAYLOAD
    assert hub.state.bytes_sent == len(PAYLOAD)  # sent once
    assert "waiting" in phases  # the second one said why it was not moving
