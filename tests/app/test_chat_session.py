from __future__ import annotations

import pytest

from app.chat_session import ChatSession
from app.conversations import ConversationStore, Versions
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


def _session_with_two_turns(tmp_path):
    session = ChatSession(ConversationStore(tmp_path / "c.sqlite3"), Settings(system_prompt=""))
    conv = session.send(None, "first question").conversation_id
    session.answer_finished(conv, "first answer", complete=True)
    session.send(conv, "second question")
    session.answer_finished(conv, "second answer", complete=True)
    return session, conv


def test_regenerate_keeps_the_last_answer_as_a_version_and_answers_the_last_question_again(tmp_path):
    session, conv = _session_with_two_turns(tmp_path)
    pending = session.regenerate(conv)
    assert pending.messages[-1] == ("user", "second question")
    assert [m.content for m in session.store.messages(conv)] == ["first question", "first answer", "second question"]
    session.answer_finished(conv, "second answer, again", complete=True)
    question = session.store.messages(conv)[2]
    assert session.store.versions(conv) == {question.id: Versions(question.id, 2, 2)}
    session.store.show_version(conv, question.id, 1)
    assert session.last_answer(conv) == "second answer"
    assert session.store.versions(conv)[question.id].shown == 1


def test_regenerating_an_earlier_answer_keeps_what_followed_it_in_its_version(tmp_path):
    session, conv = _session_with_two_turns(tmp_path)
    first_answer = session.store.messages(conv)[1]
    pending = session.regenerate(conv, first_answer.id)
    assert [c for _, c in pending.messages] == ["first question"]
    session.answer_finished(conv, "another first answer", complete=True)
    first_question = session.store.messages(conv)[0]
    session.store.show_version(conv, first_question.id, 1)
    assert [m.content for m in session.store.messages(conv)][1:] == ["first answer", "second question", "second answer"]


def test_edit_sends_the_new_text_as_a_version_of_the_message(tmp_path):
    session, conv = _session_with_two_turns(tmp_path)
    second = session.store.messages(conv)[2]
    assert session.message_text(conv, second.id) == "second question"
    pending = session.edit(conv, second.id, "second question, better")
    assert [c for _, c in pending.messages] == ["first question", "first answer", "second question, better"]
    first_answer = session.store.messages(conv)[1]
    assert session.store.versions(conv) == {first_answer.id: Versions(first_answer.id, 2, 2)}
    with pytest.raises(ValueError):
        session.edit(conv, None, "  ")


def test_export_to_markdown_and_last_answer(tmp_path):
    session, conv = _session_with_two_turns(tmp_path)
    assert session.last_answer(conv) == "second answer"
    markdown = session.to_markdown(conv)
    assert markdown.startswith("# first question\n")
    assert markdown.index("## You\n\nfirst question") < markdown.index("## SmallThinker\n\nsecond answer")


def test_the_last_code_block_of_the_last_answer(tmp_path):
    session = ChatSession(ConversationStore(tmp_path / "c.sqlite3"), Settings())
    conv = session.send(None, "code please").conversation_id
    session.answer_finished(conv, "First:\n```python\nx = 1\n```\nThen:\n```\nprint(x)\n```\nDone.", complete=True)
    assert session.last_code_block(conv) == "print(x)\n"
    session.answer_finished(conv, "No code here.", complete=True)
    assert session.last_code_block(conv) == ""


def test_code_blocks_inside_lists_tildes_and_a_stopped_answer_are_found():
    from app.code_fences import code_blocks

    answer = (
        "1. Install it:\n\n   ```sh\n   pip install tea\n   ```\n\n"
        "2. Then brew:\n\n   ```python\n   import tea\n\n   if tea.ready():\n       print(tea)\n   ```\n"
    )
    # The one-line shell block was copied as "the last" when the Python one was indented.
    assert code_blocks(answer) == ["pip install tea\n", "import tea\n\nif tea.ready():\n    print(tea)\n"]
    assert code_blocks("~~~~\nz\n~~~~\n") == ["z\n"]
    assert code_blocks("Here:\n```js\nlet a = 1\n") == ["let a = 1\n"]  # stopped before the fence closed
