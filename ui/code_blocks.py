"""A code block of an answer as the chat view shows it: framed, highlighted, labelled, copyable.

Written straight into the document with the cursor API: a frame (border, background,
padding), a header line (the language, then a "Copy" link the view handles), and the code
as Pygments tokens, each with the character format of its token type. No HTML is built
or parsed and no table laid out: 150 blocks cost about what their text does, where HTML
tables took 1.4 ms each. Colours follow the theme (light: Pygments' "default", dark:
"github-dark"); the code keeps the view's font size in the system's fixed-pitch family.
"""

from __future__ import annotations

import functools
import threading

from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound
from PySide6.QtGui import QColor, QFont, QFontDatabase, QTextCharFormat, QTextCursor, QTextFrameFormat

COPY_SCHEME = "copy-code"  # href="copy-code:N" copies the view's Nth code block
_STYLES = {False: "default", True: "github-dark"}
_BACKGROUND = {False: "#f6f8fa", True: "#0d1117"}
_BORDER = {False: "#d0d7de", True: "#3d444d"}
_MUTED = {False: "#59636e", True: "#9198a1"}
_LINK = {False: "#0969da", True: "#8ab4f8"}
_MAX_HIGHLIGHTED_CHARS = 200_000  # beyond this a block is shown plain


def insert_code_block(cursor: QTextCursor, code: str, language: str, index: int, *, dark: bool) -> None:
    """Insert the framed block at `cursor`, and leave the cursor after the frame."""
    frame = cursor.insertFrame(_frame_format(dark))
    header = QTextCharFormat()
    header.setForeground(QColor(_MUTED[dark]))
    cursor.insertText(f"{language or 'code'}    ", header)
    cursor.insertText("Copy", _link_format(dark, index))
    cursor.insertBlock()
    lexer = _lexer(language if len(code) <= _MAX_HIGHLIGHTED_CHARS else "")
    for token_type, value in lexer.get_tokens(code.rstrip("\n")):
        cursor.insertText(value, _token_format(dark, token_type))
    cursor.setPosition(frame.lastPosition() + 1)


@functools.cache
def _frame_format(dark: bool) -> QTextFrameFormat:
    frame = QTextFrameFormat()
    frame.setBorder(1)
    frame.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
    frame.setBorderBrush(QColor(_BORDER[dark]))
    frame.setBackground(QColor(_BACKGROUND[dark]))
    frame.setPadding(6)
    frame.setTopMargin(4)
    frame.setBottomMargin(4)
    return frame


@functools.cache
def _link_format(dark: bool, index: int) -> QTextCharFormat:
    link = QTextCharFormat()
    link.setAnchor(True)
    link.setAnchorHref(f"{COPY_SCHEME}:{index}")
    link.setForeground(QColor(_LINK[dark]))
    link.setFontUnderline(True)
    return link


@functools.cache
def _token_format(dark: bool, token_type) -> QTextCharFormat:
    look = get_style_by_name(_STYLES[dark]).style_for_token(token_type)
    char = QTextCharFormat()
    char.setFontFamilies([QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()])
    char.setFontFixedPitch(True)
    char.setForeground(QColor(f"#{look['color']}" if look["color"] else ("#e6edf3" if dark else "#1f2328")))
    if look["bold"]:
        char.setFontWeight(QFont.Weight.Bold)
    if look["italic"]:
        char.setFontItalic(True)
    return char


@functools.cache
def _lexer(language: str):
    try:
        # ensurenl off: Pygments would end the code with a newline, an empty line in the frame
        return get_lexer_by_name(language, ensurenl=False) if language else TextLexer(ensurenl=False)
    except ClassNotFound:
        return TextLexer(ensurenl=False)


# Building a Pygments lexer compiles its regular expressions: 0.2 s for Python's on a slow
# 2-core CPU, paid by the first block of that language drawn. The window builds the usual
# ones on a thread of its own at start, while the model loads.
COMMON_LANGUAGES = ("python", "sh", "bash", "javascript", "typescript", "json", "c", "cpp", "rust", "sql", "html")
_warmed = threading.Event()


def warm_up_lexers() -> None:
    if not _warmed.is_set():
        _warmed.set()
        threading.Thread(target=lambda: [_lexer(name) for name in COMMON_LANGUAGES], daemon=True).start()
