"""What happens to a conversation when the user sends a message: no Qt, no engine calls.

The UI asks this for the messages to give the engine, and tells it how the answer
ended; the store gets the user's message at once and the answer when it completes
(or, stopped, as a partial answer), so nothing typed or generated is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.code_fences import code_blocks
from app.conversations import ConversationStore, Message, StoreError, Versions
from app.settings import Settings

_TITLE_CHARS = 48


@dataclass(frozen=True)
class PendingAnswer:
    conversation_id: int
    messages: tuple[tuple[str, str], ...]  # (role, content) for the engine, system prompt first
    user_message: Message | None = None  # the message just sent, as saved


@dataclass(frozen=True)
class ShownMessage:
    """A message as the chat view shows it: with its id for the actions, and the conversation's
    versions from it on (at the message before it) where there are several."""

    role: str
    content: str
    id: int | None = None  # None: not saved (no actions but Copy)
    versions: Versions | None = None


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
        saved = self.store.add_message(conversation_id, "user", text)
        return PendingAnswer(conversation_id, self.engine_messages(conversation_id), saved)

    def shown(self, conversation_id: int) -> tuple[list[ShownMessage], str | None]:
        """The conversation for the view, and a sentence when the database lost some of it."""
        messages = self.store.messages(conversation_id)
        versions = self.store.versions(conversation_id)
        shown, parent = [], 0
        for m in messages:
            shown.append(ShownMessage(m.role, m.content, m.id, versions.get(parent)))
            parent = m.id
        return shown, messages.damaged

    def shown_last(self, conversation_id: int, message: Message) -> ShownMessage:
        """`message`, just saved at the end of the conversation, for the view."""
        messages = self.store.messages(conversation_id)
        before = [m.id for m in messages if m.id < message.id]
        parent = before[-1] if before else 0
        return ShownMessage(message.role, message.content, message.id, self.store.versions(conversation_id).get(parent))

    def regenerate(self, conversation_id: int, answer_id: int | None = None) -> PendingAnswer:
        """Answer again: the answer `answer_id` (by default the last one) and what followed it
        are kept as a version, and the user message before it is answered anew."""
        messages = self.store.messages(conversation_id)
        if answer_id is None:
            last_user = _last(messages, "user")
            if last_user is None:
                raise ValueError("there is no message to answer again")
            after = [m for m in messages if m.id > last_user.id]
            answer_id = after[0].id if after else None
        if answer_id is not None:
            self.store.branch(conversation_id, answer_id)
        if _last(self.store.messages(conversation_id), "user") is None:
            raise ValueError("there is no message to answer again")
        return PendingAnswer(conversation_id, self.engine_messages(conversation_id))

    def message_text(self, conversation_id: int, message_id: int) -> str:
        return next((m.content for m in self.store.messages(conversation_id) if m.id == message_id), "")

    def edit(self, conversation_id: int, message_id: int | None, text: str) -> PendingAnswer:
        """Send `text` in place of the user message `message_id` (by default the last one): the
        conversation from that message on is kept as a version, and the new text is answered."""
        if not text.strip():
            raise ValueError("an empty message is not sent")
        if message_id is None:
            last_user = _last(self.store.messages(conversation_id), "user")
            message_id = last_user.id if last_user else None
        if message_id is not None:
            self.store.branch(conversation_id, message_id)
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
