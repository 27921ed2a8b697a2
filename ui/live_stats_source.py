"""The live panel's source for the loaded model: app.live_stats' sampler thread, as a Qt signal."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.live_stats import LiveStatsSampler


class LiveStatsSource(QObject):
    sampled = Signal(object)  # LiveSample, emitted on the sampler's thread (queued to the GUI)

    def __init__(self, engine_of, interval: float = 1.0) -> None:
        super().__init__()
        self._sampler = LiveStatsSampler(engine_of, self.sampled.emit, interval)

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> None:
        self._sampler.stop()
