"""Model downloads on a thread of their own (the engine thread may be busy loading)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from app.catalog import CatalogEntry
from app.downloads import DownloadProgress, ModelDownloader
from app.errors import AppError, DownloadCancelledError
from ui.worker_thread import WorkerThread

log = logging.getLogger(__name__)


class DownloadWorker(QObject):
    progress = Signal(object)  # DownloadProgress
    finished = Signal(str)  # the model file's path
    cancelled = Signal(str)
    failed = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self._cancel = threading.Event()

    def request_cancel(self) -> None:  # from the GUI thread
        self._cancel.set()

    @Slot(object, str, object)
    def start(self, entry: CatalogEntry, models_dir: str, token: str | None) -> None:
        self._cancel.clear()
        try:
            path = ModelDownloader(Path(models_dir), token=token).download(
                entry, progress=self._report, cancel=self._cancel
            )
        except DownloadCancelledError as exc:
            self.cancelled.emit(str(exc))
        except (AppError, OSError) as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # the thread boundary
            log.exception("download failed")
            self.failed.emit(f"The download failed unexpectedly: {exc}")
        else:
            self.finished.emit(str(path))

    def _report(self, progress: DownloadProgress) -> None:
        self.progress.emit(progress)


class DownloadThread(WorkerThread):
    request_start = Signal(object, str, object)

    def __init__(self) -> None:
        super().__init__(DownloadWorker(), "download")
        self.request_start.connect(self.worker.start)
        self.start()

    def stop(self) -> None:
        """Cancel a download in progress (it stays resumable) and end the thread."""
        self.worker.request_cancel()
        self.end()
