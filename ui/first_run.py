"""The page shown while no model is loaded: what this computer has, what we suggest, and why."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from app.catalog import GIB, ModelCatalog
from app.downloads import DownloadProgress, hub_offline
from app.hardware import HardwareProbe
from app.model_choice import Recommendation


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s left" if minutes else f"{secs} s left"


class FirstRunPage(QWidget):
    download_requested = Signal(str)  # catalog id
    cancel_requested = Signal()
    open_file_requested = Signal()

    def __init__(self, catalog: ModelCatalog, probe: HardwareProbe, choice: Recommendation) -> None:
        super().__init__()
        self.catalog = catalog
        self.probe = probe
        self.downloading = False
        features = ", ".join(sorted(probe.cpu_features)).upper() or "no AVX2/AVX-512/NEON detected"
        machine = QLabel(
            f"This computer: {probe.total_ram_bytes / GIB:.1f} GiB RAM "
            f"({probe.available_ram_bytes / GIB:.1f} GiB free), {probe.physical_cores} cores, {features}, "
            f"{probe.free_disk_bytes / GIB:.0f} GiB free disk."
        )
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        self.model_choice = QComboBox()
        self.model_choice.setAccessibleName("Model to download")
        for entry in catalog.entries:
            approx = "" if entry.size_is_exact else "about "
            self.model_choice.addItem(f"{entry.display_name} ({approx}{entry.size_bytes / 1e9:.1f} GB)", entry.id)
        self.set_recommendation(choice)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self._download_or_cancel)
        open_button = QPushButton("Open GGUF file…")
        open_button.clicked.connect(self.open_file_requested)
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Download progress")
        self.progress.hide()
        self.status = QLabel(
            "You are offline: download when you are connected, or open a GGUF file you already have."
            if hub_offline()
            else ""
        )
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.model_choice)
        buttons.addWidget(self.download_button)
        buttons.addWidget(open_button)
        layout = QVBoxLayout(self)
        layout.setAlignment(Qt.AlignmentFlag.AlignTop)
        title = QLabel(
            "<h2>Welcome to SmallThinker</h2>Chat with a language model that runs on this computer, offline."
        )
        for widget in (title, machine, self.reason):
            widget.setWordWrap(True)
            layout.addWidget(widget)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    def set_recommendation(self, choice: Recommendation) -> None:
        """Show `choice` (again: the speed prediction can change it once it is computed)."""
        self.choice = choice
        recommended = self.catalog.get(choice.model_id)
        self.reason.setText(f"<b>Recommended: {recommended.display_name}</b> ({choice.mode.value}). {choice.reason}")
        if not self.downloading:
            self.model_choice.setCurrentIndex(self.model_choice.findData(choice.model_id))

    def _download_or_cancel(self) -> None:
        if self.downloading:
            self.cancel_requested.emit()
        else:
            self.set_downloading(True)
            self.download_requested.emit(self.model_choice.currentData())

    def set_downloading(self, downloading: bool) -> None:
        self.downloading = downloading
        self.download_button.setText("Pause" if downloading else "Download")  # a paused download resumes
        self.model_choice.setEnabled(not downloading)
        self.progress.setVisible(downloading)

    def show_progress(self, p: DownloadProgress) -> None:
        self.progress.setMaximum(1000)
        self.progress.setValue(int(1000 * p.done_bytes / max(p.total_bytes, 1)))
        if p.phase == "verifying":
            self.status.setText(f"Verifying {p.done_bytes / 1e6:,.0f} of {p.total_bytes / 1e6:,.0f} MB…")
        elif p.phase == "waiting":
            self.status.setText(
                "Another download of this model is running (another window or the command line); "
                "waiting for it to finish…"
            )
        else:
            self.status.setText(
                f"{p.done_bytes / 1e6:,.0f} of {p.total_bytes / 1e6:,.0f} MB · "
                f"{p.bytes_per_second / 1e6:.1f} MB/s · {_eta(p.eta_seconds)}"
            )

    def show_message(self, message: str) -> None:
        self.set_downloading(False)
        self.status.setText(message)
