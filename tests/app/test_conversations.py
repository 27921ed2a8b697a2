from __future__ import annotations

import subprocess
import sys

from app.conversations import ConversationStore


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


def test_regenerate_removes_the_answer_and_what_follows(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3")
    chat = store.create()
    store.add_message(chat.id, "user", "one")
    answer = store.add_message(chat.id, "assistant", "two")
    store.add_message(chat.id, "user", "three")
    store.delete_messages_from(chat.id, answer.id)
    assert [m.content for m in store.messages(chat.id)] == ["one"]


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
