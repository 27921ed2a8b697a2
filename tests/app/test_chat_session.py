from __future__ import annotations

import pytest

from app.chat_session import ChatSession
from app.conversations import ConversationStore
from app.settings import Settings


def test_send_creates_a_titled_conversation_and_builds_the_engine_messages(tmp_path):
    session = ChatSession(ConversationStore(tmp_path / "c.sqlite3"), Settings(system_prompt="Be brief."))
    pending = session.send(None, "  What is the tallest mountain in the Alps, and how tall is it exactly?\nThanks")
    title = session.store.get(pending.conversation_id).title
    assert title.startswith("What is the tallest mountain") and title.endswith("…") and len(title) <= 48
    assert pending.messages == (
        ("system", "Be brief."),
        ("user", "What is the tallest mountain in the Alps, and how tall is it exactly?\nThanks"),
    )
    session.answer_finished(pending.conversation_id, "Mont Blanc, 4,806 m.", complete=True)
    follow_up = session.send(pending.conversation_id, "And in Austria?")
    assert [role for role, _ in follow_up.messages] == ["system", "user", "assistant", "user"]


def test_a_stopped_answer_is_kept_as_partial_and_an_empty_one_not_at_all(tmp_path):
    session = ChatSession(ConversationStore(tmp_path / "c.sqlite3"), Settings(system_prompt=""))
    pending = session.send(None, "Tell me a story")
    assert pending.messages == (("user", "Tell me a story"),)  # no empty system prompt
    assert session.answer_finished(pending.conversation_id, "", complete=False) is None
    saved = session.answer_finished(pending.conversation_id, "Once upon", complete=False)
    assert saved is not None and not saved.complete
    with pytest.raises(ValueError):
        session.send(pending.conversation_id, "   ")
