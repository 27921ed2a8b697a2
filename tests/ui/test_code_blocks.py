"""Code blocks in answers: framed, highlighted after the theme, labelled, and copied by their link."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QApplication

from ui.chat_view import ChatView
from ui.code_blocks import insert_code_block

ANSWER = (
    "Install it:\n\n```sh\npip install tea\n```\n\nThen:\n\n"
    '```python\nimport tea\n\nif tea.ready():\n    print("Tea is ready")\n```\n\nEnjoy.'
)


def test_each_block_is_framed_labelled_and_copied_by_its_link(qtbot):
    view = ChatView()
    qtbot.addWidget(view)
    view.show_messages([("user", "How?"), ("assistant", ANSWER)])
    python = 'import tea\n\nif tea.ready():\n    print("Tea is ready")\n'
    assert view.code == [("pip install tea\n", "sh"), (python, "python")]
    text = view.toPlainText()
    headers = [line.split() for line in text.splitlines() if line.endswith("Copy")]
    # each message's name line has its Copy link; each block its language and its own
    assert headers == [["You", "Copy"], ["SmallThinker", "Copy"], ["sh", "Copy"], ["python", "Copy"]]
    assert text.count("Copy") == 4 and "```" not in text  # fences are not shown
    assert "Then:" in text and "Enjoy." in text
    with qtbot.waitSignal(view.code_copied) as copied:
        view.anchorClicked.emit(QUrl("copy-code:1"))
    assert copied.args == ["python"] and QApplication.clipboard().text() == view.code[1][0]
    view.anchorClicked.emit(QUrl("copy-code:9"))  # a link that names no block does nothing
    assert QApplication.clipboard().text() == view.code[1][0]


def _colours(code: str, language: str, *, dark: bool) -> set[str]:
    view = ChatView()
    cursor = view.textCursor()
    insert_code_block(cursor, code, language, 0, dark=dark)
    found = set()
    block = view.document().begin()
    while block.isValid():
        iterator = block.begin()
        while not iterator.atEnd():
            fragment = iterator.fragment()
            if fragment.text().strip() and fragment.charFormat().fontFixedPitch():
                found.add(fragment.charFormat().foreground().color().name())
            iterator += 1
        block = block.next()
    return found


def test_highlighting_follows_the_language_and_the_theme(qtbot):
    code = 'def brew(tea):\n    return "ready"  # comment\n'
    python_light, python_dark = _colours(code, "python", dark=False), _colours(code, "python", dark=True)
    assert len(python_light) >= 3  # keywords, strings, comments, names
    assert python_light != python_dark
    assert len(_colours(code, "no-such-language", dark=False)) == 1  # unknown: plain text, one colour
    view = ChatView()
    insert_code_block(view.textCursor(), "<script>alert(1)</script>", "html", 0, dark=False)
    assert "<script>alert(1)</script>" in view.toPlainText()  # text, never markup


def test_a_streamed_answer_gets_its_code_block_once(qtbot):
    view = ChatView()
    qtbot.addWidget(view)
    view.begin_answer()
    for piece in ["Here:\n\n```py", "thon\nx = 1\n", "y = 2\n```\n\n", "Done."]:
        view.append_answer(piece)
    view.end_answer()
    assert view.code == [("x = 1\ny = 2\n", "python")]
    assert "```" not in view.toPlainText() and "Done." in view.toPlainText()


def test_a_long_conversation_opens_at_its_end_and_draws_the_rest_on_demand(qtbot):
    from app.chat_session import ShownMessage
    from ui.chat_view import SHOWN_AT_FIRST

    view = ChatView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    messages = [ShownMessage("user" if n % 2 == 0 else "assistant", f"message {n}", n + 1) for n in range(100)]
    view.show_messages(messages)
    assert view.hidden_earlier == 100 - SHOWN_AT_FIRST and len(view.shown) == SHOWN_AT_FIRST
    assert "message 99" in view.toPlainText() and "message 0\n" not in view.toPlainText()
    assert f"{100 - SHOWN_AT_FIRST} earlier messages: show them" in view.toPlainText()
    view.append_message(ShownMessage("user", "sent after opening", 101))
    view.verticalScrollBar().setValue(0)  # scrolled to the top: the earlier messages come
    assert view.hidden_earlier == 0 and len(view.shown) == 101
    text = view.toPlainText()
    assert text.index("message 0") < text.index("message 99") < text.index("sent after opening")
    assert view.verticalScrollBar().value() > 0  # the message that was at the top stays in view
