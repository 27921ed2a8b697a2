"""Conversations and their messages in SQLite, under the app's data folder.

Every write is its own transaction, so a message saved is a message kept, whatever
happens to the process afterwards. WAL mode lets the UI read while a write lands.
A streamed answer is saved when it completes, or as partial when stopped.

Versions: regenerating an answer or editing a message branches the conversation at the
message before it (its *parent*; 0 for the first). The messages from there on (the *tail*)
are kept as a numbered version of that parent, and the conversation continues with a new
one; switching versions swaps the tails. `messages` always holds the tail shown; other
versions are JSON lists of (role, content, complete) in `message_versions`, and
`live_versions` numbers the one shown. A version's own deeper versions are not kept when
another version replaces it (one level of branching per parent is what is shown).
Schema 3 added the two tables: an older database gains them and is otherwise unchanged.
"""

from __future__ import annotations

import contextlib
import json
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
CREATE TABLE IF NOT EXISTS message_versions (
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    tail TEXT NOT NULL,
    PRIMARY KEY (conversation_id, parent_id, version)
);
CREATE TABLE IF NOT EXISTS live_versions (
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, parent_id)
);
CREATE TABLE IF NOT EXISTS part_summaries (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    level INTEGER NOT NULL,
    summary TEXT NOT NULL,
    complete INTEGER NOT NULL DEFAULT 1
);
"""
# 2: part_summaries (a document summary's section summaries); 3: message versions
SCHEMA_VERSION = 3


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


@dataclass(frozen=True)
class Versions:
    """The versions of a conversation at one parent: which is shown (1-based) of how many."""

    parent_id: int
    shown: int
    total: int


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

    # --- versions ---------------------------------------------------------------------------------
    def branch(self, conversation_id: int, first_id: int) -> None:
        """Keep the messages from `first_id` on as a version and remove them from the
        conversation, which then continues as a new version at the same parent."""
        try:
            with self._db:
                parent = self._parent_of(conversation_id, first_id)
                self._keep_tail(conversation_id, parent, first_id)
                top = self._db.execute(
                    "SELECT max(version) FROM message_versions WHERE conversation_id = ? AND parent_id = ?",
                    (conversation_id, parent),
                ).fetchone()[0]
                self._set_live(conversation_id, parent, (top or 0) + 1)
        except sqlite3.Error as exc:
            raise StoreError(f"could not save the conversation's versions: {exc}") from exc

    def show_version(self, conversation_id: int, parent_id: int, version: int) -> None:
        """Show another version at `parent_id`: the tail shown now is kept as its own version."""
        try:
            with self._db:
                row = self._db.execute(
                    "SELECT tail FROM message_versions WHERE conversation_id = ? AND parent_id = ? AND version = ?",
                    (conversation_id, parent_id, version),
                ).fetchone()
                if row is None:
                    raise StoreError(f"there is no version {version} here")
                first = self._db.execute(
                    "SELECT min(id) FROM messages WHERE conversation_id = ? AND id > ?", (conversation_id, parent_id)
                ).fetchone()[0]
                if first is not None:
                    self._keep_tail(conversation_id, parent_id, first)
                self._db.execute(
                    "DELETE FROM message_versions WHERE conversation_id = ? AND parent_id = ? AND version = ?",
                    (conversation_id, parent_id, version),
                )
                now = time.time()
                for role, content, complete in json.loads(row[0]):
                    self._db.execute(
                        "INSERT INTO messages (conversation_id, role, content, complete, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (conversation_id, role, content, int(complete), now),
                    )
                self._set_live(conversation_id, parent_id, version)
        except sqlite3.Error as exc:
            raise StoreError(f"could not switch versions: {exc}") from exc

    def versions(self, conversation_id: int) -> dict[int, Versions]:
        """Per parent with more than one version: the message after it shows "shown/total"."""
        kept: dict[int, int] = {}
        for parent, count in self._db.execute(
            "SELECT parent_id, count(*) FROM message_versions WHERE conversation_id = ? GROUP BY parent_id",
            (conversation_id,),
        ):
            kept[parent] = count
        live = dict(
            self._db.execute(
                "SELECT parent_id, version FROM live_versions WHERE conversation_id = ?", (conversation_id,)
            ).fetchall()
        )
        return {parent: Versions(parent, live.get(parent, count + 1), count + 1) for parent, count in kept.items()}

    def version_numbers(self, conversation_id: int, parent_id: int) -> list[int]:
        """Every version number at `parent_id`, the one shown included, in order."""
        rows = self._db.execute(
            "SELECT version FROM message_versions WHERE conversation_id = ? AND parent_id = ?",
            (conversation_id, parent_id),
        ).fetchall()
        live = self._db.execute(
            "SELECT version FROM live_versions WHERE conversation_id = ? AND parent_id = ?",
            (conversation_id, parent_id),
        ).fetchone()
        return sorted({r[0] for r in rows} | ({live[0]} if live else set()))

    def _parent_of(self, conversation_id: int, message_id: int) -> int:
        row = self._db.execute(
            "SELECT max(id) FROM messages WHERE conversation_id = ? AND id < ?", (conversation_id, message_id)
        ).fetchone()
        return row[0] or 0

    def _keep_tail(self, conversation_id: int, parent: int, first_id: int) -> None:
        """Inside a transaction: save messages >= first_id as the live version at `parent`, then
        remove them (and the versions kept below them, which belonged to that tail)."""
        rows = self._db.execute(
            "SELECT role, content, complete FROM messages WHERE conversation_id = ? AND id >= ? ORDER BY id",
            (conversation_id, first_id),
        ).fetchall()
        live = self._db.execute(
            "SELECT version FROM live_versions WHERE conversation_id = ? AND parent_id = ?", (conversation_id, parent)
        ).fetchone()
        if rows:
            self._db.execute(
                "INSERT OR REPLACE INTO message_versions (conversation_id, parent_id, version, tail) "
                "VALUES (?, ?, ?, ?)",
                (conversation_id, parent, live[0] if live else 1, json.dumps([list(r) for r in rows])),
            )
        for table in ("message_versions", "live_versions"):
            self._db.execute(
                f"DELETE FROM {table} WHERE conversation_id = ? AND parent_id >= ?", (conversation_id, first_id)
            )
        self._db.execute("DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (conversation_id, first_id))

    def _set_live(self, conversation_id: int, parent: int, version: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO live_versions (conversation_id, parent_id, version) VALUES (?, ?, ?)",
            (conversation_id, parent, version),
        )

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
