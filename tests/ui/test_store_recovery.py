"""A conversation database that cannot be opened no longer keeps the window from opening
(issue 17, item 1): the user is told why, can start a fresh database with the old file kept
aside, or go on without saving; nothing is deleted."""

from __future__ import annotations

import pytest

from app.conversations import ConversationStore, StoreError
from ui.store_recovery import StoreRecovery


def _real_database(path):
    store = ConversationStore(path)
    conversation = store.create("Kept")
    store.add_message(conversation.id, "user", "hello " * 5000)
    store.close()
    return path


def _truncated(path):
    data = _real_database(path).read_bytes()
    path.write_bytes(data[:1500])


def _garbage_header(path):
    data = bytearray(_real_database(path).read_bytes())
    data[:16] = b"definitely not!!"
    path.write_bytes(bytes(data))


def _not_sqlite(path):
    path.write_text("# notes\n" * 200)


def _a_folder_in_its_place(path):
    path.mkdir()
    (path / "something").write_text("x")


DAMAGE = {
    "truncated": _truncated,
    "garbage header": _garbage_header,
    "not SQLite": _not_sqlite,
    "a folder": _a_folder_in_its_place,
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_database_is_set_aside_and_a_fresh_one_started(qtbot, tmp_path, case):
    path = tmp_path / "conversations.sqlite3"
    DAMAGE[case](path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(StoreError) as failed:
        ConversationStore(path).list()  # what the app did at start: no window, a traceback
    dialog = StoreRecovery(path, str(failed.value))
    qtbot.addWidget(dialog)
    assert "cannot open the conversation database" in dialog.informativeText()
    store, note = dialog.outcome(dialog.fresh)
    assert store is not None and store.saves_to_disk and store.list() == []
    kept = sorted(p for p in tmp_path.iterdir() if ".unusable-" in p.name)  # the file, then its -shm, -wal
    assert kept and f"kept as {kept[0]}" in note
    assert len(before) <= len(list(tmp_path.iterdir()))  # nothing deleted
    store.create("works")
    assert [c.title for c in store.list()] == ["works"]


def test_without_a_writable_folder_the_app_goes_on_without_saving(qtbot, tmp_path):
    folder = tmp_path / "data"
    folder.write_text("a file where the data folder should be")
    path = folder / "conversations.sqlite3"
    with pytest.raises(StoreError) as failed:
        ConversationStore(path)
    dialog = StoreRecovery(path, str(failed.value))
    qtbot.addWidget(dialog)
    store, note = dialog.outcome(dialog.fresh)
    assert not store.saves_to_disk and "not saved" in note
    store.create("in memory")
    assert len(store.list()) == 1
    assert dialog.outcome(dialog.memory)[0] is not None and dialog.outcome(dialog.quit) == (None, "")


def test_a_damaged_page_loses_one_message_and_the_rest_is_shown_with_a_reason(qtbot, open_window, tmp_path):
    # issue 17, item 2: the view was empty and "database disk image is malformed" went to stderr only
    window = open_window()
    store = window.store
    conversation = store.create("Long")
    for i in range(6):
        store.add_message(conversation.id, "user", f"message {i} " + "x" * 6000 + f"MARK{i}" + "y" * 6000)
    path = store.path
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = data.index(b"MARK3") // 4096 * 4096  # an overflow page of message 3 only
    data[page : page + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    store._db.close()
    window.store = window.session.store = ConversationStore(path)
    window.refresh_conversations()
    with qtbot.waitSignal(window.problem_shown, timeout=5000) as shown:
        window.show_conversation(conversation.id)
    assert "damaged" in shown.args[0] and "the 5 that could" in shown.args[0]
    text = window.chat_view.toPlainText()
    assert all(f"message {i}" in text for i in (0, 1, 2, 4, 5)) and "message 3" not in text


def _fill_the_disk(store) -> None:
    """SQLite's own 'database or disk is full': no page may be added, and the pages holding
    the newest messages are filled to the last bytes, so the next message needs a new page."""
    import sqlite3

    filler = store.create("filler")
    db = store._db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    for size in (3000, 1000, 300, 100, 30, 10, 1):
        try:
            for _ in range(10_000):
                db.execute(
                    "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (?, 'user', ?, 0)",
                    (filler.id, "x" * size),
                )
        except sqlite3.OperationalError as exc:
            assert "full" in str(exc)
    with pytest.raises(StoreError, match="full"):
        store.add_message(filler.id, "assistant", "an answer of a few words")


def test_a_full_disk_mid_answer_keeps_the_window_usable_and_loses_nothing(qtbot, open_window):
    # issue 17, item 3: the answer was shown but not saved, the window stayed busy ("Stop") for
    # good, and a message typed then vanished from the box unsaved
    window = open_window(max_tokens=8)
    window.send("First question")
    conversation = window.conversation_id
    _fill_the_disk(window.store)
    problems = []
    window.problem_shown.connect(problems.append)
    with qtbot.waitSignal(window.answer_finished, timeout=30_000):
        pass
    answer = window.chat_view.answer_text
    assert answer and not window.busy and window.send_button.text() == "Send"
    assert "The answer stays on screen" in problems[-1] and "full" in problems[-1]
    assert "## SmallThinker\n\n" + answer in window.session.to_markdown(conversation)  # exportable meanwhile
    window.send("Second question")
    assert window.input.toPlainText() == "Second question" and "still in the box" in problems[-1]
    window.store._db.execute("PRAGMA max_page_count = 1000000")  # room again
    window.input.clear()
    with qtbot.waitSignal(window.answer_finished, timeout=30_000):
        window.send("Second question")
    saved = [(m.role, m.content) for m in window.store.messages(conversation)]
    assert saved[:3] == [("user", "First question"), ("assistant", answer), ("user", "Second question")]
