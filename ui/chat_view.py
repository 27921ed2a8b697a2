"""The conversation as rendered Markdown, and the box the user types into."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import (
    QFont,
    QImage,
    QKeyEvent,
    QPalette,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import QApplication, QPlainTextEdit, QTextBrowser

from app.code_fences import split_code
from ui.code_blocks import COPY_SCHEME, insert_code_block

_ROLE_LABELS = {"user": "You", "assistant": "SmallThinker", "system": "System"}
_NO_IMAGE = QImage(1, 1, QImage.Format.Format_ARGB32)  # what every image in a message shows
_NO_IMAGE.fill(0)


class ChatView(QTextBrowser):
    """Messages as Markdown, code blocks framed and highlighted with a Copy link each. While an
    answer streams only that answer is re-rendered, so long conversations stay smooth; nothing
    is ever fetched from the network."""

    code_copied = Signal(str)  # the language of the block copied ("" if it names none)

    def __init__(self) -> None:
        super().__init__()
        self.setOpenLinks(False)
        self.setAccessibleName("Conversation")
        self._answer_start: int | None = None
        self._answer_text = ""
        self.code: list[tuple[str, str]] = []  # (code, language) of each block shown, by link number
        self.anchorClicked.connect(self._link_clicked)
        self.frames_painted = 0  # for bench/ui.py's frames per second

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.frames_painted += 1
        super().paintEvent(event)

    def loadResource(self, kind: int, url: QUrl):  # noqa: N802 - Qt's name
        """Nothing is loaded, local or remote, whatever a message says: a model's answer can
        name /dev/zero, a FIFO or file://HOST/share (issue 17, item 5). The answer must not
        be None: QTextDocument would then read a local file itself."""
        if kind == QTextDocument.ResourceType.ImageResource.value:
            return _NO_IMAGE
        return ""

    def show_messages(self, messages: list[tuple[str, str]]) -> None:
        self.clear()
        self.code = []
        self._answer_start = None
        cursor = self.textCursor()
        cursor.beginEditBlock()  # one layout pass for the whole conversation, not one per insertion
        for role, content in messages:
            self._insert_message(cursor, role, content)
        cursor.endEditBlock()
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
        self._insert_markdown(cursor, content)

    def _insert_markdown(self, cursor: QTextCursor, markdown: str) -> None:
        """Markdown as Qt renders it, but each fenced code block as a framed, highlighted one."""
        segments = split_code(markdown)
        for n, segment in enumerate(segments):
            if not segment.is_code:
                after_code = n > 0
                text = segment.text.lstrip("\n") if after_code else segment.text  # no blank line under a frame
                if text:
                    cursor.insertMarkdown(text)
                continue
            dark = self.palette().color(QPalette.ColorRole.Base).lightness() < 128
            insert_code_block(cursor, segment.text, segment.language, len(self.code), dark=dark)
            self.code.append((segment.text, segment.language))

    def _link_clicked(self, url: QUrl) -> None:
        if url.scheme() == COPY_SCHEME and url.path().isdigit() and int(url.path()) < len(self.code):
            code, language = self.code[int(url.path())]
            QApplication.clipboard().setText(code)
            self.code_copied.emit(language)

    def append_message(self, role: str, content: str) -> None:
        """Add one message at the end, leaving the rest of the conversation as it is."""
        self._insert_message(self.textCursor(), role, content)
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def begin_answer(self) -> None:
        cursor = self.textCursor()
        self._insert_label(cursor, "assistant")
        self._answer_start = cursor.position()  # where the not-yet-rendered tail begins
        self._answer_text = ""
        self._rendered_chars = 0  # of _answer_text, already rendered as Markdown

    def append_answer(self, text: str) -> None:
        """Add streamed text. New words go in as plain text (cheap); a finished paragraph
        with Markdown in it is rendered once, so no update redoes the whole answer."""
        if self._answer_start is None:
            self.begin_answer()
        self._answer_text += text
        self._end_cursor().insertText(text, QTextCharFormat())
        boundary = _last_paragraph_end(self._answer_text)
        if boundary > self._rendered_chars:
            finished, tail = self._answer_text[self._rendered_chars : boundary], self._answer_text[boundary:]
            if _has_markdown(finished):  # plain prose already looks right
                self._render_from_answer_start(finished, tail)
            self._rendered_chars = boundary
            self._answer_start = self._end_cursor().position() - len(tail)
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def end_answer(self) -> None:
        """Render the answer's last paragraph as Markdown, if it has any."""
        tail = self._answer_text[self._rendered_chars :]
        if self._answer_start is not None and _has_markdown(tail):
            self._render_from_answer_start(tail)
        self._answer_start = None

    def _end_cursor(self) -> QTextCursor:
        cursor = self.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _render_from_answer_start(self, markdown: str, plain_tail: str = "") -> None:
        """Replace the not-yet-rendered part of the answer by `markdown`, then `plain_tail`."""
        cursor = self.textCursor()
        cursor.setPosition(self._answer_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        self._insert_markdown(cursor, markdown)
        if plain_tail:
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
            cursor.insertText(plain_tail, QTextCharFormat())

    @property
    def answer_text(self) -> str:
        return self._answer_text


_MARKDOWN_SYNTAX = re.compile(r"[*_`#\[\]|>~<]|^\s*(?:[-+]|\d+[.)])\s", re.MULTILINE)


def _has_markdown(text: str) -> bool:
    """Whether rendering `text` as Markdown would look any different from plain text."""
    return bool(_MARKDOWN_SYNTAX.search(text))


def _last_paragraph_end(text: str) -> int:
    """Where the last complete paragraph ends (after a blank line outside a code fence), or 0."""
    end = 0
    in_fence = False
    position = 0
    for line in text.splitlines(keepends=True):
        position += len(line)
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not line.strip() and line.endswith("\n"):
            end = position
    return end


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
