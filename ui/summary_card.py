"""The card a summary shows while it runs: which part, a bar, the time left counting down, Stop.

It sits above the (emptied) conversation view, so the main area shows the document being
summarised instead of whatever chat was open; the result, a conversation of its own,
replaces it. The time left is re-estimated by the summariser after each part and counts
down by the second in between (it used to stand still for the length of a part).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from app.summarizer import SummaryProgress

_COUNTED = ("section", "combine")  # stages with a known number of parts; the others show a busy bar


class SummaryCard(QFrame):
    stop_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName("Summary in progress")
        self.title = QLabel()
        bold = QFont(self.title.font())
        bold.setBold(True)
        self.title.setFont(bold)
        self.stage = QLabel()
        self.bar = QProgressBar()
        self.eta = QLabel()
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_requested)
        row = QHBoxLayout()
        row.addWidget(self.bar, stretch=1)
        row.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.stage)
        layout.addLayout(row)
        layout.addWidget(self.eta)
        self._deadline: float | None = None
        self._timer = QTimer(self, interval=1000, timeout=self._show_time_left)
        self.hide()

    def start(self, document_name: str) -> None:
        self.title.setText(f"Summarising {document_name}")
        self.stage.setText("Reading the document…")
        self.bar.setRange(0, 0)  # busy until the parts are known
        self.eta.setText("")
        self._deadline = None
        self.stop_button.setEnabled(True)
        self._timer.start()
        self.show()

    def update_progress(self, progress: SummaryProgress) -> None:
        self.stage.setText(progress.what)
        if progress.stage in _COUNTED and progress.total:
            self.bar.setRange(0, progress.total)
            self.bar.setValue(progress.index - 1)  # parts finished
        else:
            self.bar.setRange(0, 0)
        self._deadline = time.monotonic() + progress.eta_seconds if progress.eta_seconds is not None else None
        self._show_time_left()

    def stopping(self) -> None:
        self.stop_button.setEnabled(False)
        self.eta.setText("Stopping after the part being written; what is finished is kept…")
        self._deadline = None

    def finish(self) -> None:
        self._timer.stop()
        self.hide()

    def _show_time_left(self) -> None:
        if self._deadline is None:
            return
        left = round(self._deadline - time.monotonic())
        if left <= 0:
            self.eta.setText("Almost done with this part…")
            return
        minutes, seconds = divmod(left, 60)
        self.eta.setText(f"About {minutes} min {seconds:02d} s left" if minutes else f"About {seconds} s left")
