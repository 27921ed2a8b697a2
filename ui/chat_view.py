"""The conversation as rendered Markdown, and the box the user types into."""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QFont, QKeyEvent, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QTextBrowser

_ROLE_LABELS = {"user": "You", "assistant": "SmallThinker", "system": "System"}


class ChatView(QTextBrowser):
    """Messages as Markdown. While an answer streams only that answer is re-rendered,
    so long conversations stay smooth; nothing is ever fetched from the network."""

    def __init__(self) -> None:
        super().__init__()
        self.setOpenLinks(False)
        self.setAccessibleName("Conversation")
        self._answer_start: int | None = None
        self._answer_text = ""

    def loadResource(self, kind: int, url: QUrl):  # noqa: N802 - Qt's name
        if url.scheme() in ("http", "https", "ftp"):
            return None  # no remote images or styles, ever
        return super().loadResource(kind, url)

    def show_messages(self, messages: list[tuple[str, str]]) -> None:
        self.clear()
        self._answer_start = None
        cursor = self.textCursor()
        for role, content in messages:
            self._insert_message(cursor, role, content)
        self.moveCursor(QTextCursor.MoveOperation.End)

    def _insert_label(self, cursor: QTextCursor, role: str) -> None:
        """The speaker's name in a block of its own, then a new block for the message."""
        cursor.movePosition(QTextCursor.MoveOperation.End)
        label_format = QTextBlockFormat()
        label_format.setTopMargin(14 if not self.document().isEmpty() else 0)
        if self.document().isEmpty():
            cursor.setBlockFormat(label_format)
        else:
            cursor.insertBlock(label_format)
        bold = QTextCharFormat()
        bold.setFontWeight(QFont.Weight.Bold)
        cursor.insertText(_ROLE_LABELS.get(role, role), bold)
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())

    def _insert_message(self, cursor: QTextCursor, role: str, content: str) -> None:
        self._insert_label(cursor, role)
        cursor.insertMarkdown(content)

    def begin_answer(self) -> None:
        cursor = self.textCursor()
        self._insert_label(cursor, "assistant")
        self._answer_start = cursor.position()
        self._answer_text = ""

    def append_answer(self, text: str) -> None:
        if self._answer_start is None:
            self.begin_answer()
        self._answer_text += text
        cursor = self.textCursor()
        cursor.setPosition(self._answer_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        cursor.insertMarkdown(self._answer_text)
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def end_answer(self) -> None:
        self._answer_start = None

    @property
    def answer_text(self) -> str:
        return self._answer_text


class MessageInput(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line."""

    submitted = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.setPlaceholderText("Message SmallThinker (Enter to send, Shift+Enter for a new line)")
        self.setAccessibleName("Message")
        self.setMaximumHeight(120)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        is_enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if is_enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            text = self.toPlainText()
            if text.strip():
                self.submitted.emit(text)
                self.clear()
            return
        super().keyPressEvent(event)
