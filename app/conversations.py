"""Conversations and their messages in SQLite, under the app's data folder.

Every write is its own transaction, so a message saved is a message kept, whatever
happens to the process afterwards. WAL mode lets the UI read while a write lands.
A streamed answer is saved when it completes, or as partial when stopped.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from app.errors import AppError
from app.paths import data_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    complete INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
CREATE TABLE IF NOT EXISTS part_summaries (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    level INTEGER NOT NULL,
    summary TEXT NOT NULL,
    complete INTEGER NOT NULL DEFAULT 1
);
"""
SCHEMA_VERSION = 2  # 2: part_summaries (a document summary's section summaries)


class StoreError(AppError, RuntimeError):
    """The conversation database cannot be opened or written."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class PartSummaryRow:
    label: str
    level: int  # 0: a part of the document, 1+: summaries of summaries
    summary: str
    complete: bool


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    complete: bool  # False: an answer stopped part-way


_SELECT_MESSAGES = "SELECT id, conversation_id, role, content, complete FROM messages"


class Messages(list):
    """A conversation's messages; `damaged` is a sentence for the user when some were unreadable."""

    damaged: str | None = None


class ConversationStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or self.default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The UI's worker thread and tests may use one store from different threads, one at a time.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:  # OSError: an unwritable or missing data folder
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StoreError(f"cannot open the conversation database {self.path}: {reason}") from exc

    @staticmethod
    def default_path() -> Path:
        return data_dir() / "conversations.sqlite3"

    @classmethod
    def in_memory(cls) -> ConversationStore:
        """Conversations kept until the app quits, where no database file can be used."""
        return cls(Path(":memory:"))

    @property
    def saves_to_disk(self) -> bool:
        return str(self.path) != ":memory:"

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        try:
            with self._db:  # one transaction, committed on return
                return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"could not save to {self.path}: {exc}") from exc

    # --- conversations ----------------------------------------------------------------------
    def create(self, title: str = "New chat") -> Conversation:
        now = time.time()
        cursor = self._write(
            "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)", (title, now, now)
        )
        return Conversation(cursor.lastrowid, title, now, now)

    def rename(self, conversation_id: int, title: str) -> None:
        self._write("UPDATE conversations SET title = ? WHERE id = ?", (title.strip() or "Untitled", conversation_id))

    def delete(self, conversation_id: int) -> None:
        self._write("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def list(self, search: str = "") -> list[Conversation]:
        """Most recently active first; `search` matches titles and message text."""
        if search:
            like = f"%{search.replace('%', '').replace('_', '')}%"
            rows = self._db.execute(
                "SELECT DISTINCT c.id, c.title, c.created_at, c.updated_at FROM conversations c "
                "LEFT JOIN messages m ON m.conversation_id = c.id "
                "WHERE c.title LIKE ? OR m.content LIKE ? ORDER BY c.updated_at DESC, c.id DESC",
                (like, like),
            )
        else:
            rows = self._db.execute(
                "SELECT id, title, created_at, updated_at FROM conversations ORDER BY updated_at DESC, id DESC"
            )
        return [Conversation(*row) for row in rows]

    def get(self, conversation_id: int) -> Conversation:
        row = self._db.execute(
            "SELECT id, title, created_at, updated_at FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"there is no conversation {conversation_id}")
        return Conversation(*row)

    # --- messages ---------------------------------------------------------------------------------
    def add_message(self, conversation_id: int, role: str, content: str, *, complete: bool = True) -> Message:
        now = time.time()
        try:
            with self._db:
                cursor = self._db.execute(
                    "INSERT INTO messages (conversation_id, role, content, complete, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (conversation_id, role, content, int(complete), now),
                )
                self._db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        except sqlite3.Error as exc:
            raise StoreError(f"could not save the message: {exc}") from exc
        return Message(cursor.lastrowid, conversation_id, role, content, complete)

    def update_message(self, message_id: int, content: str, *, complete: bool = True) -> None:
        self._write("UPDATE messages SET content = ?, complete = ? WHERE id = ?", (content, int(complete), message_id))

    def delete_messages_from(self, conversation_id: int, message_id: int) -> None:
        """Remove a message and everything after it (for regenerate and edit-and-resend)."""
        self._write("DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (conversation_id, message_id))

    def messages(self, conversation_id: int) -> Messages:
        """The conversation's messages. Where the file is damaged (a bad disk sector, a copy cut
        short), every message that can still be read is returned, and `damaged` says how many
        could not be (issue 17, item 2: the view was empty, the reason on stderr only)."""
        try:
            rows = self._db.execute(_SELECT_MESSAGES + " WHERE conversation_id = ? ORDER BY id", (conversation_id,))
            return Messages(Message(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows)
        except sqlite3.DatabaseError as exc:
            return self._salvage(conversation_id, exc)

    def _salvage(self, conversation_id: int, error: Exception) -> Messages:
        """Message by message, skipping the unreadable ones."""
        try:
            ids = [
                r[0] for r in self._db.execute("SELECT id FROM messages WHERE conversation_id = ?", (conversation_id,))
            ]
        except sqlite3.DatabaseError:
            ids = []  # the index too is damaged: try every id around this conversation's
            with contextlib.suppress(sqlite3.DatabaseError):
                ids = list(range(1, 1 + (self._db.execute("SELECT max(id) FROM messages").fetchone()[0] or 0)))
        found, lost = Messages(), 0
        for message_id in sorted(ids):
            try:
                row = self._db.execute(_SELECT_MESSAGES + " WHERE id = ?", (message_id,)).fetchone()
            except sqlite3.DatabaseError:
                lost += 1
                continue
            if row is not None and row[1] == conversation_id:
                found.append(Message(row[0], row[1], row[2], row[3], bool(row[4])))
        found.damaged = (
            f"The conversation database {self.path} is damaged ({error}): "
            f"{lost or 'some'} message(s) of this conversation could not be read; the {len(found)} that could "
            "are shown. Export the conversation to keep them, then start a fresh database."
        )
        return found

    # --- a summarised document's part summaries ---------------------------------------------------
    def add_part_summaries(self, conversation_id: int, parts: list[PartSummaryRow]) -> None:
        try:
            with self._db:
                self._db.executemany(
                    "INSERT INTO part_summaries (conversation_id, label, level, summary, complete) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(conversation_id, p.label, p.level, p.summary, int(p.complete)) for p in parts],
                )
        except sqlite3.Error as exc:
            raise StoreError(f"could not save to {self.path}: {exc}") from exc

    def part_summaries(self, conversation_id: int) -> list[PartSummaryRow]:
        rows = self._db.execute(
            "SELECT label, level, summary, complete FROM part_summaries WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return [PartSummaryRow(r[0], r[1], r[2], bool(r[3])) for r in rows]


def set_aside(path: Path) -> Path:
    """Rename a database that cannot be used, with its -wal and -shm files, to
    <name>.unusable-<date-time>: it is never deleted, and a fresh one can take its place."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.unusable-{stamp}")
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, aside.with_name(aside.name + suffix))
    os.replace(path, aside)
    return aside
