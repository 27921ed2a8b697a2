"""A window beside the chat showing memory and speed as the model answers (View > Memory and speed).

Three plots over the last minutes: the model's bytes in RAM against its budget, tokens/s,
and the share of expert uses found in memory; and a heatmap of how often each layer used
each expert. It draws what a stats source sends (a QObject with a `sampled` signal carrying
app.live_stats.LiveSample, and start/stop): sampling runs on the source's thread, the
GUI thread only hands arrays to pyqtgraph, at most five times a second however fast samples
come (a redraw of the four plots costs 70-90 ms offscreen: drawing each of 50 samples a second
kept the event loop from ever emptying). The source runs only while the panel is shown.
"""

from __future__ import annotations

import collections

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QDialog, QGridLayout, QLabel, QVBoxLayout

from app.catalog import GIB
from app.live_stats import LiveSample

WINDOW_SECONDS = 300  # the plots show the last five minutes
REDRAW_MS = 200


class LivePanel(QDialog):
    def __init__(self, source, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Memory and speed")
        self.setWindowFlag(Qt.WindowType.Tool)
        self.source = source
        self.samples: collections.deque[LiveSample] = collections.deque()
        self.summary = QLabel("Waiting for the model to answer…")
        self.summary.setObjectName("live-summary")
        self.summary.setWordWrap(True)
        palette = self.palette()
        self._text = palette.color(QPalette.ColorRole.Text)
        self._background = palette.color(QPalette.ColorRole.Base)
        self.memory_plot = self._plot("model in RAM (GiB)")
        self.memory_curve = self.memory_plot.plot(pen=pg.mkPen("#2f7ed8", width=2), name="in RAM")
        self.budget_curve = self.memory_plot.plot(pen=pg.mkPen(self._text, style=Qt.PenStyle.DashLine), name="budget")
        self.speed_plot = self._plot("tokens/s")
        self.speed_curve = self.speed_plot.plot(pen=pg.mkPen("#4caf50", width=2))
        self.hit_plot = self._plot("experts found (%)")
        self.hit_plot.setYRange(0, 100, padding=0.02)
        self.hit_curve = self.hit_plot.plot(pen=pg.mkPen("#e4572e", width=2))
        self.heatmap_plot = self._plot("layer", bottom="expert")
        self.heatmap = pg.ImageItem(axisOrder="row-major")
        self.heatmap.setColorMap(pg.colormap.get("viridis"))
        self.heatmap_plot.addItem(self.heatmap)
        self.heatmap_plot.invertY(True)
        self.heatmap_note = QLabel(
            "Expert use per layer (brighter: used more) appears when the model runs within a budget."
        )
        self.heatmap_note.setWordWrap(True)
        self.heatmap_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        grid = QGridLayout()
        grid.addWidget(self.memory_plot, 0, 0)
        grid.addWidget(self.speed_plot, 0, 1)
        grid.addWidget(self.hit_plot, 1, 0)
        grid.addWidget(self.heatmap_plot, 1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(grid, stretch=1)
        layout.addWidget(self.heatmap_note)
        self.resize(820, 560)
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS, timeout=self._draw)
        source.sampled.connect(self.add_sample)

    def _plot(self, left: str, bottom: str = "seconds ago") -> pg.PlotWidget:
        plot = pg.PlotWidget(background=self._background)
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        for side in ("left", "bottom"):
            plot.getAxis(side).setPen(self._text)
            plot.getAxis(side).setTextPen(self._text)
        plot.setLabel("left", left)
        plot.setLabel("bottom", bottom)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setMinimumSize(300, 180)
        return plot

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.source.start()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.source.stop()
        super().hideEvent(event)

    def add_sample(self, sample: LiveSample) -> None:
        self.samples.append(sample)
        while self.samples and sample.at - self.samples[0].at > WINDOW_SECONDS:
            self.samples.popleft()
        if not self._redraw.isActive():
            self._redraw.start()

    def _draw(self) -> None:
        if not self.samples:
            return
        sample = self.samples[-1]
        ago = np.array([s.at - sample.at for s in self.samples])
        resident = np.array([np.nan if s.resident_bytes is None else s.resident_bytes / GIB for s in self.samples])
        self.memory_curve.setData(ago, resident, connect="finite")
        if sample.budget_bytes is not None:
            self.budget_curve.setData(ago, np.full(len(ago), sample.budget_bytes / GIB))
        self.speed_curve.setData(ago, np.array([s.tokens_per_s for s in self.samples]))
        hits = np.array([np.nan if s.hit_rate is None else s.hit_rate * 100 for s in self.samples])
        self.hit_curve.setData(ago, hits, connect="finite")
        if sample.usage is not None and sample.usage.any():
            shares = sample.usage / np.maximum(1, sample.usage.sum(axis=1, keepdims=True))
            self.heatmap.setImage(shares, autoLevels=True)
            self.heatmap_note.setText("Expert use per layer this session: brighter cells are experts used more.")
        self.summary.setText(_summary(sample))

    def figures_shown(self) -> dict:
        """What the plots hold now, for tests: sample count and the latest values."""
        _, speeds = self.speed_curve.getData()
        image = self.heatmap.image
        return {
            "samples": len(self.samples),
            "tokens_per_s": float(speeds[-1]) if speeds is not None and len(speeds) else None,
            "heatmap_shape": None if image is None else tuple(image.shape),
            "summary": self.summary.text(),
        }


def _summary(sample: LiveSample) -> str:
    parts = [f"{sample.tokens_per_s:.1f} tokens/s" if sample.tokens_per_s > 0 else "idle"]
    if sample.resident_bytes is not None:
        memory = f"model in RAM {sample.resident_bytes / GIB:.2f} GiB"
        if sample.budget_bytes is not None:
            memory += f" of a {sample.budget_bytes / GIB:.2f} GiB budget"
        parts.append(memory)
    if sample.hit_rate is not None:
        parts.append(f"{sample.hit_rate:.0%} of expert uses found in memory")
    elif sample.budget_bytes is None:
        parts.append("every expert in memory")
    return " · ".join(parts)
