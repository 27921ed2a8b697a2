"""Fenced code blocks in Markdown answers: found, and cut out of the text around them.

As CommonMark has them: ``` or ~~~ (or longer), indented too (inside a list item), closed by
the same fence or left open at the end of an answer that was stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCED_CODE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)\n(?P<body>.*?)(?:^[ \t]*(?P=fence)[ \t]*$\n?|\Z)",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Segment:
    text: str  # Markdown, or the code itself (unindented, without fences)
    language: str | None = None  # for code: the fence's first word ("" when it names none)

    @property
    def is_code(self) -> bool:
        return self.language is not None


def split_code(markdown: str) -> list[Segment]:
    """`markdown` as Markdown segments and code blocks, in order."""
    segments, start = [], 0
    for match in _FENCED_CODE.finditer(markdown):
        if match.start() > start:
            segments.append(Segment(markdown[start : match.start()]))
        info = match["info"].strip().split()
        segments.append(Segment(_unindented(match["body"], len(match["indent"])), info[0] if info else ""))
        start = match.end()
    if start < len(markdown):
        segments.append(Segment(markdown[start:]))
    return segments


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of `markdown`, without fences or the list indentation around them."""
    return [s.text for s in split_code(markdown) if s.is_code]


def _unindented(body: str, indent: int) -> str:
    return "".join(_unindent(line, indent) for line in body.splitlines(keepends=True))


def _unindent(line: str, indent: int) -> str:
    if not line.strip():
        return line.lstrip(" \t")  # a blank line keeps its newline
    return line[indent:] if not line[:indent].strip() else line.lstrip()
