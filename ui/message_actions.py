"""What the links on each message do (Copy, Regenerate, Edit, the versions' arrows) and the
Chat menu's Regenerate and Edit, for the main window.

Regenerating or editing branches the conversation (app/conversations.py): what it replaces
is kept as a version the arrows switch back to. Editing puts the message into the box with
a banner saying so; Enter sends it as the new version, Cancel or Esc keeps the old one.
"""

from __future__ import annotations


class MessageActions:
    """Mixed into MainWindow, which provides session, store, conversation_id, busy, the chat
    view, the message box and the edit banner."""

    editing: int | None  # the message being edited, or None

    def _message_action(self, name: str, argument) -> None:
        if self.busy:
            self.statusBar().showMessage("Wait for the answer to finish (or Stop it) first.", 5000)
            return
        if name == "regenerate":
            self.regenerate(argument)
        elif name == "edit":
            self.start_edit(argument)
        elif name == "version":
            self.show_version(*argument)

    def regenerate(self, answer_id: int | None = None) -> None:
        """Answer again (by default the last answer); the old answer stays as a version."""
        if self.busy or self.model is None or self.conversation_id is None:
            return
        self.cancel_edit()
        try:
            self._answer(self.session.regenerate(self.conversation_id, answer_id))
        except ValueError as exc:
            self.statusBar().showMessage(str(exc), 5000)

    def start_edit(self, message_id: int | None = None) -> None:
        """Put a message (by default the last one sent) into the box to edit and send again."""
        if self.busy or self.conversation_id is None:
            return
        if message_id is None:
            sent = [m for m in self.store.messages(self.conversation_id) if m.role == "user"]
            if not sent:
                return
            message_id = sent[-1].id
        self.editing = message_id
        self.input.setPlainText(self.session.message_text(self.conversation_id, message_id))
        self.edit_banner.show()
        self.input.setFocus()

    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.input.clear()
        self.edit_banner.hide()

    def show_version(self, parent_id: int, version: int) -> None:
        if self.busy or self.conversation_id is None:
            return
        self.cancel_edit()
        self.store.show_version(self.conversation_id, parent_id, version)
        self.show_conversation(self.conversation_id)
