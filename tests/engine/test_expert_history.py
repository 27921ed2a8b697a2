"""The expert usage history kept between sessions: saved, merged, and refused when unusable."""

from __future__ import annotations

import logging

import numpy as np

from engine.experts.history import HISTORY_TOKENS, history_tokens, load_history, save_history


def test_a_session_is_added_to_the_history_and_read_back(tmp_path):
    path = tmp_path / "usage" / "model-123.npz"
    first = np.arange(12, dtype=np.int64).reshape(3, 4)
    save_history(path, None, first, n_expert_used=2)
    saved = load_history(path, 3, 4)
    np.testing.assert_array_equal(saved, first)
    save_history(path, saved, np.ones((3, 4), dtype=np.int64), n_expert_used=2)
    np.testing.assert_array_equal(load_history(path, 3, 4), first + 1)
    assert not list(path.parent.glob("*.partial"))


def test_old_sessions_fade_once_the_history_is_full(tmp_path):
    path = tmp_path / "m.npz"
    old = np.zeros((2, 4))
    old[:, 0] = HISTORY_TOKENS * 2  # two layers, two experts per token: HISTORY_TOKENS tokens of expert 0
    new = np.zeros((2, 4))
    new[:, 1] = HISTORY_TOKENS * 2
    save_history(path, old, new, n_expert_used=2)
    merged = load_history(path, 2, 4)
    assert history_tokens(merged, 2) == HISTORY_TOKENS
    np.testing.assert_allclose(merged[:, 0], merged[:, 1])  # halved each, the new as heavy as the old


def test_an_unusable_history_is_ignored_with_a_warning(tmp_path, caplog):
    assert load_history(tmp_path / "none.npz", 2, 4) is None  # no history yet: nothing to say
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    other_model = tmp_path / "other.npz"
    save_history(other_model, None, np.ones((3, 4)), n_expert_used=2)
    negative = tmp_path / "negative.npz"
    np.savez(negative, selections=-np.ones((2, 4)))
    with caplog.at_level(logging.WARNING):
        for path in (damaged, other_model, negative):
            assert load_history(path, 2, 4) is None
    assert len(caplog.records) == 3 and all("ignoring the expert usage history" in r.message for r in caplog.records)
