"""What happens to a conversation when the user sends a message: no Qt, no engine calls.

The UI asks this for the messages to give the engine, and tells it how the answer
ended; the store gets the user's message at once and the answer when it completes
(or, stopped, as a partial answer), so nothing typed or generated is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.code_fences import code_blocks
from app.conversations import ConversationStore, Message, StoreError
from app.settings import Settings

_TITLE_CHARS = 48


@dataclass(frozen=True)
class PendingAnswer:
    conversation_id: int
    messages: tuple[tuple[str, str], ...]  # (role, content) for the engine, system prompt first


class ChatSession:
    def __init__(self, store: ConversationStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        # Answers that could not be saved (a full disk): saved before the next message, and
        # part of an export meanwhile, so that nothing shown is lost (issue 17, item 3).
        self.unsaved: list[tuple[int, str, bool]] = []  # (conversation, text, complete)

    def engine_messages(self, conversation_id: int) -> tuple[tuple[str, str], ...]:
        history = [(m.role, m.content) for m in self.store.messages(conversation_id) if m.content]
        system = self.settings.system_prompt.strip()
        return ((("system", system),) if system else ()) + tuple(history)

    def send(self, conversation_id: int | None, text: str) -> PendingAnswer:
        """Save the user's message (creating the conversation if needed) and say what to answer."""
        text = text.strip()
        if not text:
            raise ValueError("an empty message is not sent")
        self.save_unsaved()  # an answer still waiting comes first, or the message is not sent
        if conversation_id is None:
            conversation_id = self.store.create(_title_from(text)).id
        self.store.add_message(conversation_id, "user", text)
        return PendingAnswer(conversation_id, self.engine_messages(conversation_id))

    def regenerate(self, conversation_id: int) -> PendingAnswer:
        """Drop the last answer (and anything after it) so the last user message is answered again."""
        messages = self.store.messages(conversation_id)
        last_user = _last(messages, "user")
        if last_user is None:
            raise ValueError("there is no message to answer again")
        after = [m for m in messages if m.id > last_user.id]
        if after:
            self.store.delete_messages_from(conversation_id, after[0].id)
        return PendingAnswer(conversation_id, self.engine_messages(conversation_id))

    def last_user_text(self, conversation_id: int) -> str:
        last_user = _last(self.store.messages(conversation_id), "user")
        return last_user.content if last_user else ""

    def edit_last(self, conversation_id: int, text: str) -> PendingAnswer:
        """Replace the last user message (and drop what followed it), then answer the new one."""
        last_user = _last(self.store.messages(conversation_id), "user")
        if last_user is not None:
            self.store.delete_messages_from(conversation_id, last_user.id)
        return self.send(conversation_id, text)

    def last_answer(self, conversation_id: int) -> str:
        last = _last(self.store.messages(conversation_id), "assistant")
        return last.content if last else ""

    def last_code_block(self, conversation_id: int) -> str:
        """The last fenced code block of the last answer, without its fences ("" if none)."""
        blocks = code_blocks(self.last_answer(conversation_id))
        return blocks[-1] if blocks else ""

    def to_markdown(self, conversation_id: int) -> str:
        """The conversation as a Markdown document, for export."""
        conversation = self.store.get(conversation_id)
        names = {"user": "You", "assistant": "SmallThinker", "system": "System"}
        parts = [f"# {conversation.title}\n"]
        messages = [(m.role, m.content, m.complete) for m in self.store.messages(conversation_id)]
        messages += [("assistant", text, complete) for c, text, complete in self.unsaved if c == conversation_id]
        for role, content, complete in messages:
            partial = " (stopped)" if not complete else ""
            parts.append(f"## {names.get(role, role)}{partial}\n\n{content}\n")
        return "\n".join(parts)

    def answer_finished(self, conversation_id: int, text: str, *, complete: bool) -> Message | None:
        """Save the answer; a stopped one is kept, marked partial. Nothing is saved for no text.
        When it cannot be saved it is kept in `unsaved` and StoreError says why."""
        if not text:
            return None
        try:
            return self.store.add_message(conversation_id, "assistant", text, complete=complete)
        except StoreError:
            self.unsaved.append((conversation_id, text, complete))
            raise

    def save_unsaved(self) -> None:
        """Save the answers kept from a failed save, oldest first (StoreError if still impossible)."""
        while self.unsaved:
            conversation_id, text, complete = self.unsaved[0]
            self.store.add_message(conversation_id, "assistant", text, complete=complete)
            self.unsaved.pop(0)


def _last(messages: list[Message], role: str) -> Message | None:
    return next((m for m in reversed(messages) if m.role == role), None)


def _title_from(text: str) -> str:
    first_line = text.splitlines()[0].strip()
    return first_line if len(first_line) <= _TITLE_CHARS else first_line[: _TITLE_CHARS - 1].rstrip() + "…"
