"""A code block of an answer as the chat view shows it: framed, highlighted, labelled, copyable.

Pygments colours the code (inline styles: QTextDocument reads no style sheets of classes),
in a light or a dark style after the window's palette; the frame is an HTML table, which
QTextDocument draws with a background and a border; its "Copy" is a link the view handles.
The code inherits the view's font size (a <pre> in the document's fixed-pitch font).
"""

from __future__ import annotations

import html

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound

COPY_SCHEME = "copy-code"  # href="copy-code:N" copies the view's Nth code block
_STYLES = {False: "default", True: "github-dark"}
_BORDER = {False: "#d0d7de", True: "#3d444d"}
_MAX_HIGHLIGHTED_CHARS = 200_000  # beyond this a block is shown plain (Pygments is linear but not free)


def code_block_html(code: str, language: str, index: int, *, dark: bool) -> str:
    style = get_style_by_name(_STYLES[dark])
    background = style.background_color or ("#0d1117" if dark else "#f6f8fa")
    muted = "#9198a1" if dark else "#59636e"
    lexer = _lexer(language) if len(code) <= _MAX_HIGHLIGHTED_CHARS else TextLexer()
    body = highlight(code.rstrip("\n"), lexer, HtmlFormatter(style=style, noclasses=True, nowrap=True))
    label = html.escape(language or "code")
    return (
        f'<table width="100%" cellspacing="0" cellpadding="6" border="1" '
        f'style="border-color:{_BORDER[dark]}; border-style:solid; border-collapse:collapse; '
        f'background-color:{background}; margin-top:4px; margin-bottom:4px;">'
        f'<tr><td><span style="color:{muted};">{label}</span></td>'
        f'<td align="right"><a href="{COPY_SCHEME}:{index}">Copy</a></td></tr>'
        f'<tr><td colspan="2"><pre style="margin:0px;">{body}</pre></td></tr></table>'
    )


def _lexer(language: str):
    try:
        return get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        return TextLexer()
