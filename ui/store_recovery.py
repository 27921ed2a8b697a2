"""What the app does when its conversation database cannot be opened at start: it still
opens, says what is wrong, and lets the user start a fresh database (the old file kept
aside, never deleted) or go on without saving (issue 17, item 1)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from app.conversations import ConversationStore, StoreError, set_aside


class StoreRecovery(QMessageBox):
    def __init__(self, path: Path, error: str, parent=None) -> None:
        super().__init__(parent)
        self.path = path
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle("Conversations cannot be opened")
        self.setText("SmallThinker Desktop cannot open its conversation database.")
        self.setInformativeText(
            f"{error}\n\n"
            "Start a fresh database: the old file is kept beside it, renamed, for recovery or a backup.\n"
            "Continue without saving: conversations last until you quit (for a full disk or a "
            "read-only folder; free space or fix the folder, then start again)."
        )
        self.fresh = self.addButton("Start a fresh database", QMessageBox.ButtonRole.AcceptRole)
        self.memory = self.addButton("Continue without saving", QMessageBox.ButtonRole.ActionRole)
        self.quit = self.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
        self.setDefaultButton(self.fresh)

    def outcome(self, clicked) -> tuple[ConversationStore | None, str]:
        """The store to run with (None: quit) and a sentence for the window to show."""
        if clicked is self.fresh:
            try:
                aside = set_aside(self.path) if self.path.exists() else None
                kept = f" The old one was kept as {aside}." if aside else ""
                return ConversationStore(self.path), f"Started a fresh conversation database.{kept}"
            except (OSError, StoreError) as exc:
                return ConversationStore.in_memory(), (
                    f"A fresh database could not be made either ({exc}); conversations are not saved until "
                    "the folder is writable again."
                )
        if clicked is self.memory:
            return ConversationStore.in_memory(), "Conversations are not saved in this session."
        return None, ""


def open_store_or_ask(path: Path | None = None) -> tuple[ConversationStore | None, str]:
    """The conversation store; when it cannot be opened, the user decides what to do."""
    try:
        return ConversationStore(path), ""
    except StoreError as exc:
        dialog = StoreRecovery(path or ConversationStore.default_path(), str(exc))
        dialog.exec()
        return dialog.outcome(dialog.clickedButton())
