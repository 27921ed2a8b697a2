"""The main window. A placeholder until the chat UI lands."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMainWindow


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("SmallThinker Desktop")
        self.resize(960, 640)
        placeholder = QLabel("SmallThinker Desktop\n\nThe chat view arrives with the chat UI.")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        placeholder.setAccessibleName("Welcome message")
        self.setCentralWidget(placeholder)
