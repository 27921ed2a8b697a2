"""Code blocks in answers: framed, highlighted after the theme, labelled, and copied by their link."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QApplication

from ui.chat_view import ChatView
from ui.code_block_html import code_block_html

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
    lines = text.splitlines()
    assert "sh" in lines and "python" in lines  # each block's language label
    assert text.count("Copy") == 2 and "```" not in text  # fences are not shown
    assert "Then:" in text and "Enjoy." in text
    with qtbot.waitSignal(view.code_copied) as copied:
        view.anchorClicked.emit(QUrl("copy-code:1"))
    assert copied.args == ["python"] and QApplication.clipboard().text() == view.code[1][0]
    view.anchorClicked.emit(QUrl("copy-code:9"))  # a link that names no block does nothing
    assert QApplication.clipboard().text() == view.code[1][0]


def test_highlighting_follows_the_language_and_the_theme():
    code = 'print("hi")\n'
    python_light = code_block_html(code, "python", 0, dark=False)
    python_dark = code_block_html(code, "python", 0, dark=True)
    plain = code_block_html(code, "no-such-language", 0, dark=False)
    assert python_light.count("color:") > plain.count("color:")  # keywords and strings coloured
    assert python_light != python_dark and "background-color:" in python_dark
    escaped = code_block_html("<script>", "", 0, dark=False)
    assert "<script>" not in escaped and "&lt;script&gt;" in escaped


def test_a_streamed_answer_gets_its_code_block_once(qtbot):
    view = ChatView()
    qtbot.addWidget(view)
    view.begin_answer()
    for piece in ["Here:\n\n```py", "thon\nx = 1\n", "y = 2\n```\n\n", "Done."]:
        view.append_answer(piece)
    view.end_answer()
    assert view.code == [("x = 1\ny = 2\n", "python")]
    assert "```" not in view.toPlainText() and "Done." in view.toPlainText()
