"""A finished (or stopped) summary becomes a conversation the user can ask follow-ups in."""

from __future__ import annotations

from app.conversations import Conversation, ConversationStore, PartSummaryRow
from app.summarizer import SummaryResult


def summary_request(result: SummaryResult) -> str:
    doc = result.document
    extent = f"{doc.pages} pages" if doc.pages else f"{len(doc.sections)} sections"
    return f"Summarise «{doc.title}» ({doc.kind}, {extent})."


def summary_answer(result: SummaryResult) -> str:
    if not result.cancelled:
        return result.final
    done = [p for p in result.parts if p.level == 0 and p.complete]
    lines = [f"Stopped before the end: {len(done)} part summaries were finished (see Section summaries)."]
    lines += [f"- **{p.label}**: {p.summary}" for p in done]
    return "\n".join(lines)


def save_summary(store: ConversationStore, result: SummaryResult) -> Conversation:
    """A conversation titled after the file: the request, the summary as the answer, the parts kept."""
    conversation = store.create(f"Summary: {result.document.title}")
    store.add_message(conversation.id, "user", summary_request(result))
    store.add_message(conversation.id, "assistant", summary_answer(result), complete=not result.cancelled)
    store.add_part_summaries(
        conversation.id, [PartSummaryRow(p.label, p.level, p.summary, p.complete) for p in result.parts]
    )
    return conversation


def part_summaries_markdown(store: ConversationStore, conversation_id: int) -> str:
    """The section summaries of a summarised document, for the window to show; "" if none."""
    parts = store.part_summaries(conversation_id)
    lines = []
    for p in parts:
        kind = "part" if p.level == 0 else f"combined (level {p.level})"
        note = " (interrupted)" if not p.complete else ""
        lines.append(f"### {p.label} — {kind}{note}\n\n{p.summary or '(empty)'}\n")
    return "\n".join(lines)
