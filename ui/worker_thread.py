"""A worker QObject living on a QThread of its own (the pattern both workers share)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QThread


class WorkerThread(QObject):
    """Owns `worker` and its thread. Subclasses declare request signals and connect them
    to the worker's slots before calling `start()`; queued across threads, they run there."""

    def __init__(self, worker: QObject, name: str) -> None:
        super().__init__()
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)

    def start(self) -> None:
        self.thread.start()

    def end(self) -> None:
        """Let the thread finish what it was asked, then end it (waits)."""
        self.thread.quit()
        self.thread.wait()
