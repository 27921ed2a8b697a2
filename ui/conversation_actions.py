"""The Conversation menu's actions and the copy actions of the main window.

Each action is a plain method tests can call; the `_ask_*` wrappers add the dialog.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication, QFileDialog, QInputDialog, QMessageBox


class ConversationActions:
    """Mixed into MainWindow, which provides store, session, conversation_id and the widgets."""

    def rename_conversation(self, title: str) -> None:
        if self.conversation_id is not None and title.strip():
            self.store.rename(self.conversation_id, title)
            self.refresh_conversations()

    def delete_conversation(self) -> None:
        if self.conversation_id is not None and not self.busy:
            self.store.delete(self.conversation_id)
            self.new_chat()
            self.refresh_conversations()

    def export_markdown(self, path: str) -> None:
        if self.conversation_id is not None:
            Path(path).write_text(self.session.to_markdown(self.conversation_id), encoding="utf-8")
            self.statusBar().showMessage(f"Exported to {path}", 5000)

    def _ask_rename(self) -> None:
        if self.conversation_id is None:
            return
        title, ok = QInputDialog.getText(
            self, "Rename conversation", "Title:", text=self.store.get(self.conversation_id).title
        )
        if ok:
            self.rename_conversation(title)

    def _ask_delete(self) -> None:
        if self.conversation_id is None:
            return
        title = self.store.get(self.conversation_id).title
        if QMessageBox.question(self, "Delete conversation", f"Delete “{title}” and all its messages?") == (
            QMessageBox.StandardButton.Yes
        ):
            self.delete_conversation()

    def _ask_export(self) -> None:
        if self.conversation_id is None:
            return
        name = self.store.get(self.conversation_id).title.replace("/", "-") + ".md"
        # The home folder, not the working folder (which for an app started from a menu is
        # wherever the desktop happened to be).
        suggested = str(Path.home() / name)
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation", suggested, "Markdown (*.md)")
        if path:
            self.export_markdown(path)

    def copy_last_answer(self) -> None:
        if self.conversation_id is not None:
            QApplication.clipboard().setText(self.session.last_answer(self.conversation_id))

    def copy_last_code_block(self) -> None:
        code = self.session.last_code_block(self.conversation_id) if self.conversation_id is not None else ""
        if code:
            QApplication.clipboard().setText(code)
            self.statusBar().showMessage("Code copied.", 3000)
        else:
            self.statusBar().showMessage("The last answer has no code block.", 3000)
