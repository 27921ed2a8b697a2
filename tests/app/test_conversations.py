from __future__ import annotations

import sqlite3
import subprocess
import sys

from app.conversations import SCHEMA_VERSION, ConversationStore, Versions


def test_conversations_and_messages_persist_across_reopening(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3")
    chat = store.create("Trip to Rome")
    store.add_message(chat.id, "user", "What should I see?")
    answer = store.add_message(chat.id, "assistant", "The Forum", complete=False)
    store.update_message(answer.id, "The Forum and the Pantheon.", complete=True)
    store.close()
    reopened = ConversationStore(tmp_path / "c.sqlite3")
    assert [c.title for c in reopened.list()] == ["Trip to Rome"]
    assert [(m.role, m.content, m.complete) for m in reopened.messages(chat.id)] == [
        ("user", "What should I see?", True),
        ("assistant", "The Forum and the Pantheon.", True),
    ]


def test_rename_delete_search_and_order(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3")
    first, second = store.create("Gardening"), store.create("Ships")
    store.add_message(first.id, "user", "roses in spring")
    assert [c.id for c in store.list()] == [first.id, second.id]  # most recently active first
    store.rename(second.id, "  Sailing ships ")
    assert store.get(second.id).title == "Sailing ships"
    assert [c.id for c in store.list("roses")] == [first.id]
    assert [c.id for c in store.list("sailing")] == [second.id]
    store.delete(first.id)
    assert [c.id for c in store.list()] == [second.id]
    assert store.messages(first.id) == []


def test_versions_of_a_tail_are_kept_swapped_and_survive_reopening(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3")
    chat = store.create()
    question = store.add_message(chat.id, "user", "one")
    answer = store.add_message(chat.id, "assistant", "two")
    store.add_message(chat.id, "user", "three")
    store.branch(chat.id, answer.id)  # regenerate "two": it and what followed become version 1
    assert [m.content for m in store.messages(chat.id)] == ["one"]
    store.add_message(chat.id, "assistant", "two, again", complete=False)
    store.close()
    store = ConversationStore(tmp_path / "c.sqlite3")
    assert store.versions(chat.id) == {question.id: Versions(question.id, 2, 2)}
    store.show_version(chat.id, question.id, 1)
    assert [(m.content, m.complete) for m in store.messages(chat.id)] == [("one", True), ("two", True), ("three", True)]
    store.show_version(chat.id, question.id, 2)
    assert [(m.content, m.complete) for m in store.messages(chat.id)] == [("one", True), ("two, again", False)]
    assert store.version_numbers(chat.id, question.id) == [1, 2]
    store.delete(chat.id)
    assert store.versions(chat.id) == {}


OLD_SCHEMA = """
CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')), content TEXT NOT NULL,
    complete INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE TABLE part_summaries (id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE, label TEXT NOT NULL,
    level INTEGER NOT NULL, summary TEXT NOT NULL, complete INTEGER NOT NULL DEFAULT 1);
INSERT INTO conversations VALUES (7, 'From the last release', 1.0, 2.0);
INSERT INTO messages VALUES (1, 7, 'user', 'Hello', 1, 1.0);
INSERT INTO messages VALUES (2, 7, 'assistant', 'Hi, stopped', 0, 2.0);
INSERT INTO part_summaries VALUES (1, 7, 'Part 1', 0, 'A part.', 1);
PRAGMA user_version=2;
"""


def test_a_database_of_the_previous_schema_opens_with_everything_in_it(tmp_path):
    path = tmp_path / "c.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
    store = ConversationStore(path)
    assert [(c.id, c.title, c.created_at, c.updated_at) for c in store.list()] == [
        (7, "From the last release", 1.0, 2.0)
    ]
    assert [(m.id, m.role, m.content, m.complete) for m in store.messages(7)] == [
        (1, "user", "Hello", True),
        (2, "assistant", "Hi, stopped", False),
    ]
    assert store.part_summaries(7)[0].summary == "A part." and store.versions(7) == {}
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    store.branch(7, 2)  # the new tables work on the old data
    assert store.versions(7) == {1: Versions(1, 2, 2)}


def test_a_saved_message_survives_a_crash(tmp_path):
    db = tmp_path / "c.sqlite3"
    child = (
        "import os, sys\n"
        "from app.conversations import ConversationStore\n"
        f"store = ConversationStore(__import__('pathlib').Path({str(db)!r}))\n"
        "chat = store.create('Before the crash')\n"
        "store.add_message(chat.id, 'assistant', 'partial answer', complete=False)\n"
        "os._exit(9)  # no close, no cleanup: as if the process died\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    store = ConversationStore(db)
    (chat,) = store.list()
    assert [(m.content, m.complete) for m in store.messages(chat.id)] == [("partial answer", False)]
