"""Saved KV caches of conversations that are not the active one.

The engine has one live llama.cpp sequence. When a request comes for another
conversation, the live cache is saved here (llama.cpp's sequence state) and the best
saved one is put back: the one sharing the longest token prefix with the new prompt.
No conversation ids are needed; the tokens say which cache fits.

Memory holds a bounded LRU. With a folder, every saved state is also written to disk
(atomically), so caches survive eviction from memory and restarts of the app; a state
from another model file or KV type never matches because the folder is keyed by both.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_DISK_FILES_MAX = 32


def common_prefix_length(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    mismatch = np.flatnonzero(a[:n] != b[:n])
    return int(mismatch[0]) if len(mismatch) else n


@dataclass
class SavedConversation:
    key: str
    tokens: np.ndarray  # int32 token ids whose KV the state holds
    state: bytes | None  # None: only on disk


class ConversationCacheStore:
    def __init__(self, *, max_entries: int, max_bytes: int, folder: Path | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.folder = folder
        self._entries: OrderedDict[str, SavedConversation] = OrderedDict()  # least recently used first
        if folder is not None:
            self._load_index(folder)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_in_memory(self) -> int:
        return sum(len(e.state) for e in self._entries.values() if e.state is not None)

    def best_match(self, tokens: np.ndarray) -> tuple[SavedConversation | None, int]:
        best, best_len = None, 0
        for entry in self._entries.values():
            length = common_prefix_length(entry.tokens, tokens)
            if length > best_len:
                best, best_len = entry, length
        return best, best_len

    def put(self, tokens: np.ndarray, state: bytes) -> None:
        key = hashlib.sha1(tokens.astype(np.int32).tobytes()).hexdigest()
        self._entries.pop(key, None)
        self._entries[key] = SavedConversation(key, tokens.astype(np.int32), state)
        if self.folder is not None:
            self._write(key, tokens, state)
        self._shrink()

    def take(self, entry: SavedConversation) -> bytes | None:
        """The state of `entry` (read from disk if needed), removed from the store."""
        self._entries.pop(entry.key, None)
        if entry.state is not None:
            return entry.state
        try:
            return (self.folder / f"{entry.key}.state").read_bytes()
        except OSError as exc:
            log.warning("saved conversation cache %s is unreadable: %s", entry.key, exc)
            return None

    def _shrink(self) -> None:
        """Bound the states held in memory, least recently used first.

        With a folder an evicted state stays listed (it is on disk); without, it is gone.
        """
        while True:
            in_memory = [e for e in self._entries.values() if e.state is not None]
            if len(in_memory) <= self.max_entries and sum(len(e.state) for e in in_memory) <= self.max_bytes:
                return
            oldest = in_memory[0]
            if self.folder is None:
                del self._entries[oldest.key]
            else:
                oldest.state = None

    # --- disk ---------------------------------------------------------------------------
    def _write(self, key: str, tokens: np.ndarray, state: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for suffix, data in ((".tokens", tokens.astype("<i4").tobytes()), (".state", state)):
                tmp = self.folder / f"{key}{suffix}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, self.folder / f"{key}{suffix}")
            self._prune_disk()
        except OSError as exc:
            log.warning("could not save a conversation cache to %s: %s", self.folder, exc)

    def _prune_disk(self) -> None:
        states = sorted(self.folder.glob("*.state"), key=lambda p: p.stat().st_mtime)
        for old in states[: max(0, len(states) - _DISK_FILES_MAX)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".tokens").unlink(missing_ok=True)
            self._entries.pop(old.stem, None)

    def _load_index(self, folder: Path) -> None:
        if not folder.is_dir():
            return
        for state_file in sorted(folder.glob("*.state"), key=lambda p: p.stat().st_mtime):
            try:
                tokens = np.frombuffer(state_file.with_suffix(".tokens").read_bytes(), dtype="<i4")
            except OSError:
                continue
            self._entries[state_file.stem] = SavedConversation(state_file.stem, tokens.astype(np.int32), None)
