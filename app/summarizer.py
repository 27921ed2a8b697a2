"""Summarise a document of any length with a model whose context is limited.

If the document fits (prompt, text and answer within the context) it is summarised in one
pass. Otherwise map-reduce: the sections are packed into chunks by the model's own token
count, each chunk is summarised, then neighbouring summaries are combined, level by level,
until all of them fit one prompt, and that gives the final summary. Each summary is at
most a quarter of the context, and a chunk holds at least two of them, so every level
at least halves their number.

Cancel (a threading.Event) stops the model within the section it is on; what was
finished is returned, marked cancelled.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.documents import Document, Section
from app.errors import AppError
from engine.chunks import Chunk
from engine.config import SamplingParams

SYSTEM = "You summarise documents faithfully and concisely. Keep names, numbers and conclusions."
_MARGIN_TOKENS = 32  # template tokens that merge differently around the text, and rounding
_MIN_SUMMARY_TOKENS = 32
_COUNT_PIECE_CHARS = 1 << 16  # counted per call, so that Stop is seen between calls


_STAGES = ("whole", "section", "combine", "final")


class ChatEngine(Protocol):
    n_ctx: int

    def tokenize(self, text: str) -> list[int]: ...

    def encode_conversation(self, messages: Sequence[Mapping[str, str]]) -> list[int]: ...

    def stream_chat(
        self, messages: Sequence[Mapping[str, str]], sampling: SamplingParams, cancel: threading.Event
    ) -> Iterator[Chunk]: ...


@dataclass(frozen=True)
class SummaryProgress:
    stage: str  # "section", "combine", "final", "whole"
    index: int  # 1-based, within the stage (and level)
    total: int
    level: int  # 0: the document's sections; 1, 2...: combining summaries
    eta_seconds: float | None

    @property
    def what(self) -> str:
        """The stage in words, without the time left."""
        return {
            "section": f"Section {self.index} of {self.total}",
            "combine": f"Combining summaries: {self.index} of {self.total} (level {self.level})",
            "final": "Writing the final summary",
            "whole": "Summarising the whole document",
            "preparing": "Reading the document into sections",
        }[self.stage]

    def describe(self) -> str:
        what = self.what
        if self.eta_seconds is None:
            return what
        minutes, seconds = divmod(round(self.eta_seconds), 60)
        return f"{what} · about {minutes} min {seconds:02d} s left" if minutes else f"{what} · about {seconds} s left"


@dataclass(frozen=True)
class PartSummary:
    label: str  # the part it covers: "page 3", "page 4 - page 9", a heading
    level: int  # 0: summary of the text, 1+: summary of summaries
    summary: str
    complete: bool = True  # False: cut short by cancel


@dataclass(frozen=True)
class SummaryResult:
    document: Document
    final: str  # "" when cancelled before it
    parts: tuple[PartSummary, ...]
    cancelled: bool

    @property
    def sections(self) -> int:
        return sum(1 for p in self.parts if p.level == 0)

    @property
    def levels(self) -> int:
        """Reduce levels: 0 for one pass or map-only."""
        return max((p.level for p in self.parts), default=0)


class SummaryCancelledError(Exception):
    pass


class SummaryError(AppError, ValueError):
    """Summarising cannot start; the message says why."""


class Summarizer:
    def __init__(
        self,
        engine: ChatEngine,
        *,
        sampling: SamplingParams | None = None,
        max_summary_tokens: int | None = None,
    ) -> None:
        self.engine = engine
        n_ctx = engine.n_ctx
        # A summary is at most a third of what a prompt can carry, so a chunk holds two or more.
        room = n_ctx - self._overhead("a document title of a usual length.pdf") - _MARGIN_TOKENS
        self.summary_tokens = min(max_summary_tokens or 512, n_ctx // 4, room // 3 - _MARGIN_TOKENS)
        if self.summary_tokens < _MIN_SUMMARY_TOKENS:
            raise SummaryError(
                f"a context of {n_ctx} tokens is too small to summarise documents; raise it in Settings (4096 or more)"
            )
        sampling = sampling or SamplingParams(temperature=0.3, top_k=20, top_p=0.95)
        self.sampling = dataclasses.replace(sampling, max_tokens=self.summary_tokens)
        self.chunk_tokens = self._capacity("a document title of a usual length.pdf")
        self.prefill_tokens = self.decoded_tokens = 0  # what the model evaluated and wrote, all calls

    def _overhead(self, title: str) -> int:
        """Prompt tokens besides the text, for the longest stage and label."""
        label = "page 9999 - page 9999 (part 99 of 99)"  # the longest label a part gets
        return max(len(self.engine.encode_conversation(self._messages(s, title, label, ""))) for s in _STAGES)

    def _capacity(self, title: str) -> int:
        """Tokens of text one prompt can carry beside its instructions and its answer."""
        return self.engine.n_ctx - self._overhead(title) - self.summary_tokens - _MARGIN_TOKENS

    # --- the plan -------------------------------------------------------------------------------
    def summarize(
        self,
        document: Document,
        progress: Callable[[SummaryProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> SummaryResult:
        cancel = cancel or threading.Event()
        self.chunk_tokens = self._capacity(document.title)
        run = _Run(self, document, progress or (lambda _p: None), cancel)
        try:
            return run.go()
        except SummaryCancelledError:
            return SummaryResult(document, "", tuple(run.parts), cancelled=True)

    def tokens(self, text: str) -> int:
        return len(self.engine.tokenize(text))

    def count_tokens(self, text: str, cancel: threading.Event) -> int:
        """Tokens of `text`, counted in pieces so that a long document is not one call that
        Stop cannot interrupt (a piece boundary may shift the count by a token)."""
        if len(text) <= _COUNT_PIECE_CHARS:
            return self.tokens(text)
        total, start = 0, 0
        while start < len(text):
            if cancel.is_set():
                raise SummaryCancelledError
            end = start + _cut_point(text[start : start + _COUNT_PIECE_CHARS], _COUNT_PIECE_CHARS)
            total += self.tokens(text[start:end])
            start = end
        return total

    def clip(self, summary: str) -> str:
        """At most `summary_tokens` tokens as the tokenizer counts them, so that every combining
        level at least halves the summaries (an answer re-tokenized can count more tokens
        than were sampled)."""
        while (n := self.tokens(summary)) > self.summary_tokens:
            summary = summary[: max(1, len(summary) * self.summary_tokens * 9 // (n * 10))]
        return summary

    def pack(self, sections: Sequence[Section], cancel: threading.Event | None = None) -> list[Section]:
        """Sections packed into chunks of at most `chunk_tokens`; long ones split at paragraphs."""
        cancel = cancel or threading.Event()
        pieces = [piece for section in sections for piece in self._split(section, cancel)]
        chunks: list[list[Section]] = []
        used = 0
        for piece, n in pieces:
            if chunks and used + n <= self.chunk_tokens:
                chunks[-1].append(piece)
                used += n
            else:
                chunks.append([piece])
                used = n
        return [_joined(chunk) for chunk in chunks]

    def _split(self, section: Section, cancel: threading.Event) -> list[tuple[Section, int]]:
        """Linear in the text: the section is counted once, then each part is cut from a window
        a little longer than a chunk at the section's own characters per token (re-counting
        what remained at every cut made a 1 MB section take minutes)."""
        text = section.text
        n = self.count_tokens(text, cancel)
        if n <= self.chunk_tokens:
            return [(section, n)]
        aim = max(1, int(self.chunk_tokens * len(text) / n))  # characters of one chunk, as counted
        parts, start = [], 0
        while start < len(text):
            if cancel.is_set():
                raise SummaryCancelledError
            window = text[start : start + aim + aim // 4]
            cut = _cut_point(window, aim)
            while cut > 1 and (size := self.tokens(window[:cut])) > self.chunk_tokens:
                cut = _cut_point(window, cut * self.chunk_tokens * 9 // (size * 10))
            if window[:cut].strip():
                parts.append(window[:cut].strip())
            start += cut
        labelled = [Section(f"{section.label} (part {i} of {len(parts)})", p) for i, p in enumerate(parts, 1)]
        return [(s, self.tokens(s.text)) for s in labelled]

    # --- prompts ------------------------------------------------------------------------------------
    def _messages(self, stage: str, title: str, label: str, text: str) -> list[dict[str, str]]:
        ask = {
            "whole": f"Summarise the document «{title}».",
            "section": f"Summarise this part of «{title}» ({label}) in a few sentences.",
            "combine": f"These are summaries of consecutive parts of «{title}» ({label}). Combine them into one.",
            "final": f"These are summaries of the parts of «{title}». Write the summary of the whole document.",
        }[stage]
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{ask}\n\n{text}"}]

    def ask(self, stage: str, title: str, label: str, text: str, cancel: threading.Event) -> tuple[str, bool]:
        """One summary; (text, complete)."""
        pieces, finish = [], None
        for chunk in self.engine.stream_chat(self._messages(stage, title, label, text), self.sampling, cancel):
            pieces.append(chunk.text)
            finish = chunk.finish_reason
            if chunk.stats is not None:
                self.prefill_tokens += chunk.stats.prefill_tokens
                self.decoded_tokens += chunk.stats.tokens_out
        return "".join(pieces).strip(), finish != "cancelled"


class _Run:
    """One summarisation: its progress reports, partial results and time estimates."""

    def __init__(self, s: Summarizer, document: Document, progress, cancel: threading.Event) -> None:
        self.s, self.document, self.progress, self.cancel = s, document, progress, cancel
        self.parts: list[PartSummary] = []
        self.started = time.perf_counter()
        self.steps_done = 0
        self.steps_left = 1  # re-estimated as the plan unfolds

    def go(self) -> SummaryResult:
        self.progress(SummaryProgress("preparing", 0, 0, 0, None))  # counting a long text takes a while
        whole = self.document.text
        n = self.s.count_tokens(whole, self.cancel)
        if n <= self.s.chunk_tokens:
            final = self.step("whole", 1, 1, 0, "the whole document", whole, n)
            return SummaryResult(self.document, final, tuple(self.parts), cancelled=False)
        chunks = self.s.pack(self.document.sections, self.cancel)
        sizes = [self.s.tokens(c.text) for c in chunks]
        self.steps_left = len(chunks) + self._reduce_steps(len(chunks))
        items = []
        for i, (chunk, size) in enumerate(zip(chunks, sizes, strict=True), 1):
            summary = self.step("section", i, len(chunks), 0, chunk.label, chunk.text, size)
            items.append((chunk.label, self.s.clip(summary)))
        level = 0
        while self.s.tokens(_listing(items)) > self.s.chunk_tokens:
            level += 1
            groups = self._groups(items)
            self.steps_left = len(groups) + self._reduce_steps(len(groups))
            combined = []
            for i, (label, group) in enumerate(groups, 1):
                listing = _listing(group)
                summary = self.step("combine", i, len(groups), level, label, listing, self.s.tokens(listing))
                combined.append((label, self.s.clip(summary)))
            items = combined
        listing = _listing(items)
        final = self.step("final", 1, 1, level + 1, "", listing, self.s.tokens(listing), keep=False)
        return SummaryResult(self.document, final, tuple(self.parts), cancelled=False)

    def _groups(self, items: list[tuple[str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
        groups: list[list[tuple[str, str]]] = [[]]
        for item in items:
            if groups[-1] and self.s.tokens(_listing([*groups[-1], item])) > self.s.chunk_tokens:
                groups.append([])
            groups[-1].append(item)
        return [(_span(g[0][0], g[-1][0]), g) for g in groups]

    def step(self, stage, index, total, level, label, text, n_tokens, *, keep: bool = True) -> str:
        if self.cancel.is_set():
            raise SummaryCancelledError
        self.progress(SummaryProgress(stage, index, total, level, self._eta()))
        summary, complete = self.s.ask(stage, self.document.title, label, text, self.cancel)
        if keep or not complete:
            self.parts.append(PartSummary(label or "final", level, summary, complete))
        if not complete:
            raise SummaryCancelledError
        self.steps_done += 1
        self.steps_left = max(1, self.steps_left - 1)
        return summary

    def _reduce_steps(self, n_items: int) -> int:
        """Combining steps still to come for `n_items` summaries, and the final one."""
        per_group = max(2, self.s.chunk_tokens // (self.s.summary_tokens + _MARGIN_TOKENS))
        steps = 1
        while n_items > per_group:
            n_items = -(-n_items // per_group)
            steps += n_items
        return steps

    def _eta(self) -> float | None:
        """From the measured time per step (their sizes are alike: a chunk or a group)."""
        if not self.steps_done:
            return None
        return (time.perf_counter() - self.started) / self.steps_done * self.steps_left


def _joined(sections: list[Section]) -> Section:
    label = sections[0].label if len(sections) == 1 else _span(sections[0].label, sections[-1].label)
    return Section(label, "\n\n".join(s.text for s in sections))


def _span(first: str, last: str) -> str:
    first, last = first.split(" - ")[0], last.split(" - ")[-1]
    return first if first == last else f"{first} - {last}"


def _listing(items: Sequence[tuple[str, str]]) -> str:
    return "\n\n".join(f"[{label}] {summary}" for label, summary in items)


def _cut_point(text: str, near: int) -> int:
    """A cut at or before `near` characters, at a paragraph, line, sentence or word end."""
    near = max(1, min(near, len(text)))
    if near >= len(text):
        return len(text)
    for mark in ("\n\n", "\n", ". ", " "):
        at = text.rfind(mark, 0, near)
        if at > near // 2:
            return at + len(mark)
    return near
