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

from app.chat_session import ShownMessage
from app.code_fences import split_code
from ui.code_blocks import COPY_SCHEME, insert_code_block

_ROLE_LABELS = {"user": "You", "assistant": "SmallThinker", "system": "System"}
MESSAGE_SCHEME = "message"  # href="message:ACTION:N" on each message's header line
SHOWN_AT_FIRST = 40  # messages drawn when a conversation opens; the earlier ones on demand
_NO_IMAGE = QImage(1, 1, QImage.Format.Format_ARGB32)  # what every image in a message shows
_NO_IMAGE.fill(0)


class ChatView(QTextBrowser):
    """Messages as Markdown, code blocks framed and highlighted with a Copy link each. While an
    answer streams only that answer is re-rendered, so long conversations stay smooth; nothing
    is ever fetched from the network."""

    code_copied = Signal(str)  # the language of the block copied ("" if it names none)
    message_copied = Signal()
    # ("regenerate", answer id), ("edit", message id), ("version", (parent id, version number))
    action_requested = Signal(str, object)

    def __init__(self) -> None:
        super().__init__()
        self.setOpenLinks(False)
        self.setAccessibleName("Conversation")
        self._answer_start: int | None = None
        self._answer_text = ""
        self.code: list[tuple[str, str]] = []  # (code, language) of each block shown, by link number
        self.shown: list[ShownMessage] = []  # by Copy link number
        self._headers: list[int] = []  # each shown message's header block number
        self._answer_header: int | None = None  # the streamed answer's header block number
        self.anchorClicked.connect(self._link_clicked)
        self._all_messages: list[ShownMessage] = []
        self.hidden_earlier = 0  # messages of the conversation not drawn yet (see show_messages)
        self.verticalScrollBar().valueChanged.connect(self._scrolled)
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

    def show_messages(self, messages: list[ShownMessage | tuple[str, str]], *, everything: bool = False) -> None:
        """Draw a conversation: its last SHOWN_AT_FIRST messages, and a link to the earlier ones
        (which also come when the view is scrolled to the top). A 300-message conversation with
        150 code blocks took 300-450 ms to draw whole on a slow 2-core CPU; its last 40, under 150 ms."""
        messages = [m if isinstance(m, ShownMessage) else ShownMessage(*m) for m in messages]
        self._all_messages = list(messages)
        hidden = 0 if everything else max(0, len(messages) - SHOWN_AT_FIRST)
        self.hidden_earlier = 0  # clearing scrolls to the top: that must not draw the rest now
        self.clear()
        self.code = []
        self.shown, self._headers = [], []
        self._answer_start = None
        cursor = self.textCursor()
        cursor.beginEditBlock()  # one layout pass for the whole conversation, not one per insertion
        if hidden:
            cursor.insertText(f"{hidden} earlier messages: ", self._muted())
            cursor.insertText("show them", self._link_format("earlier"))
        for message in messages[hidden:]:
            self._insert_message(cursor, message)
        cursor.endEditBlock()
        self.moveCursor(QTextCursor.MoveOperation.End)
        self.hidden_earlier = hidden

    def show_earlier(self) -> None:
        """Draw the whole conversation, keeping in view the message that was at the top."""
        if not self.hidden_earlier:
            return
        first_shown = self.hidden_earlier
        self.show_messages(self._all_messages, everything=True)
        block = self.document().findBlockByNumber(self._headers[first_shown])
        self.verticalScrollBar().setValue(int(self.document().documentLayout().blockBoundingRect(block).top()))

    def _scrolled(self, value: int) -> None:
        if value == 0 and self.hidden_earlier and self._answer_start is None:
            self.show_earlier()

    def _muted(self) -> QTextCharFormat:
        muted = QTextCharFormat()
        muted.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
        return muted

    def _insert_label(self, cursor: QTextCursor, role: str, message: ShownMessage | None = None) -> int:
        """The speaker's name in a block of its own (with `message`'s actions after it), then a
        new block for the message; returns the name's block number."""
        cursor.movePosition(QTextCursor.MoveOperation.End)
        label_format = QTextBlockFormat()
        label_format.setTopMargin(14 if not self.document().isEmpty() else 0)
        if self.document().isEmpty():
            cursor.setBlockFormat(label_format)
        else:
            cursor.insertBlock(label_format)
        header = cursor.blockNumber()
        bold = QTextCharFormat()
        bold.setFontWeight(QFont.Weight.Bold)
        cursor.insertText(_ROLE_LABELS.get(role, role), bold)
        if message is not None:
            self._write_actions(cursor, header, message)
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        return header

    def _insert_message(self, cursor: QTextCursor, message: ShownMessage) -> None:
        # With the same cursor, inside the caller's edit block: one layout for the conversation.
        self._insert_label(cursor, message.role, message)
        self._insert_markdown(cursor, message.content)

    def _write_actions(self, cursor: QTextCursor, header: int, message: ShownMessage) -> None:
        """At `cursor` (the end of the header line): Copy; Regenerate or Edit; the versions' arrows."""
        index = len(self.shown)
        self.shown.append(message)
        self._headers.append(header)
        links = [("Copy", f"copy:{index}")]
        if message.id is not None and message.role == "assistant":
            links.append(("Regenerate", f"regenerate:{message.id}"))
        elif message.id is not None and message.role == "user":
            links.append(("Edit", f"edit:{message.id}"))
        muted = self._muted()
        cursor.insertText("    ", muted)
        for n, (text, action) in enumerate(links):
            if n:
                cursor.insertText(" · ", muted)
            cursor.insertText(text, self._link_format(action))
        v = message.versions
        if v is not None and v.total > 1:
            cursor.insertText("    ", muted)
            for arrow, target in (("‹", v.shown - 1), (None, None), ("›", v.shown + 1)):
                if arrow is None:
                    cursor.insertText(f" {v.shown}/{v.total} ", muted)
                elif 1 <= target <= v.total:
                    cursor.insertText(arrow, self._link_format(f"version:{v.parent_id}:{target}"))
                else:
                    cursor.insertText(arrow, muted)

    def _link_format(self, action: str) -> QTextCharFormat:
        link = QTextCharFormat()
        link.setAnchor(True)
        link.setAnchorHref(f"{MESSAGE_SCHEME}:{action}")
        link.setForeground(self.palette().color(QPalette.ColorRole.Link))
        return link

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
        elif url.scheme() == MESSAGE_SCHEME:
            self.run_action(url.path())

    def run_action(self, action: str) -> None:
        """One of the header links' actions, "copy:N", "edit:ID", "regenerate:ID", "version:PARENT:N"."""
        name, _, argument = action.partition(":")
        numbers = [int(x) for x in argument.split(":") if x.isdigit()]
        if name == "earlier":
            self.show_earlier()
        elif name == "copy" and numbers and numbers[0] < len(self.shown):
            QApplication.clipboard().setText(self.shown[numbers[0]].content)
            self.message_copied.emit()
        elif name in ("edit", "regenerate") and len(numbers) == 1:
            self.action_requested.emit(name, numbers[0])
        elif name == "version" and len(numbers) == 2:
            self.action_requested.emit(name, (numbers[0], numbers[1]))

    def actions_of(self, index: int) -> list[str]:
        """The header links of the `index`th message shown (for tests): their hrefs."""
        block = self.document().findBlockByNumber(self._headers[index])
        found, it = [], block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().isAnchor():
                found.append(fragment.charFormat().anchorHref().removeprefix(f"{MESSAGE_SCHEME}:"))
            it += 1
        return found

    def append_message(self, message: ShownMessage) -> None:
        """Add one message at the end, leaving the rest of the conversation as it is."""
        self._all_messages.append(message)
        self._insert_message(self.textCursor(), message)
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def begin_answer(self) -> None:
        cursor = self.textCursor()
        self._answer_header = self._insert_label(cursor, "assistant")
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

    def end_answer(self, saved: ShownMessage | None = None) -> None:
        """Render the answer's last paragraph as Markdown, if it has any; then give it its
        actions (`saved`: the answer as stored, with its id and versions)."""
        tail = self._answer_text[self._rendered_chars :]
        if self._answer_start is not None and _has_markdown(tail):
            self._render_from_answer_start(tail)
        self._answer_start = None
        if self._answer_header is not None:
            cursor = QTextCursor(self.document().findBlockByNumber(self._answer_header))
            cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock)
            answer = saved or ShownMessage("assistant", self._answer_text)
            self._all_messages.append(answer)
            self._write_actions(cursor, self._answer_header, answer)
            self._answer_header = None

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
    """Enter sends, Shift+Enter starts a new line, Esc says so (it cancels an edit)."""

    submitted = Signal(str)
    escape_pressed = Signal()

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
        if event.key() == Qt.Key.Key_Escape:
            self.escape_pressed.emit()
            return
        super().keyPressEvent(event)
