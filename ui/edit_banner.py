"""The line above the message box while a sent message is being edited: what Enter will do, and Cancel."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton


class EditBanner(QFrame):
    cancelled = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("edit-banner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        self.setAutoFillBackground(True)
        self.label = QLabel(
            "Editing your message: Enter sends it as a new version (the old one stays, ‹ › switches back)."
        )
        self.label.setWordWrap(True)
        cancel = QPushButton("Cancel")
        cancel.setToolTip("Keep the message as it was (Esc)")
        cancel.clicked.connect(self.cancelled)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        row.addWidget(self.label, stretch=1)
        row.addWidget(cancel)
        self.hide()
