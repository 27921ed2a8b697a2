"""The conversation search field: Esc clears it (and only then goes on to Stop)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QLineEdit


class SearchBox(QLineEdit):
    def event(self, event: QEvent) -> bool:
        # Esc is also Chat > Stop's shortcut; claiming it here while there is text to clear
        # makes Qt deliver it to this field instead of to the window-wide shortcut.
        if event.type() == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_Escape and self.text():
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            return
        super().keyPressEvent(event)
