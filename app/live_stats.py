"""What the live memory panel shows, sampled off the GUI thread while a model answers.

A sampler thread reads the engine's figures once a second: resident model bytes as the
expert manager's last sweep measured them (mincore, on its I/O thread; no new pass is
made here), the budget, the expert cache's hits and misses and the tokens generated, and
the selections per layer and expert so far. Rates are over the last few seconds: at 2-3
tokens/s a one-second count jumps between 2 and 3. Samples are plain frozen
values handed to a callback (the window turns them into a Qt signal). The sampler runs
only while someone looks: the panel starts and stops it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RATE_SECONDS = 5.0  # tokens/s and the hit rate are over this much of the recent past


@dataclass(frozen=True, eq=False)
class LiveSample:
    at: float  # time.monotonic()
    tokens_per_s: float  # over the interval since the last sample (0 while idle)
    resident_bytes: int | None  # the model's bytes in RAM
    budget_bytes: int | None  # the weights' budget; None when the model runs in memory
    hit_rate: float | None  # of expert uses over the interval; None when nothing was used
    usage: np.ndarray | None  # [n_layer, n_expert] selections this session; None without the manager


class LiveStatsSampler:
    """Samples `engine_of()` (None while no local model is loaded) every `interval` seconds."""

    def __init__(self, engine_of: Callable[[], object | None], publish: Callable[[LiveSample], None], interval=1.0):
        self._engine_of, self._publish, self._interval = engine_of, publish, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recent: collections.deque[tuple[object, float, int, int, int]] = collections.deque()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="live-stats", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            engine = self._engine_of()
            if engine is not None and hasattr(engine, "expert_stats"):  # a remote engine has none
                self._publish(self.sample(engine))

    def sample(self, engine) -> LiveSample:
        now = time.monotonic()
        stats = engine.expert_stats()
        report = engine.memory_report(fresh=False)
        tokens = engine.tokens_generated
        hits, misses = (stats.hits, stats.misses) if stats is not None else (0, 0)
        recent = self._recent
        if recent and (recent[-1][0] is not engine or tokens < recent[-1][2] or hits < recent[-1][3]):
            recent.clear()  # another model, or the counts were reset: rates start again
        while len(recent) > 1 and now - recent[1][1] >= RATE_SECONDS:
            recent.popleft()
        last = recent[0] if recent else None
        recent.append((engine, now, tokens, hits, misses))
        tps = hit_rate = None
        if last is not None:
            tps = (tokens - last[2]) / max(1e-6, now - last[1])
            used = (hits - last[3]) + (misses - last[4])
            hit_rate = (hits - last[3]) / used if used > 0 else None
        return LiveSample(
            at=now,
            tokens_per_s=tps or 0.0,
            resident_bytes=report.model_resident_bytes,
            budget_bytes=stats.budget_bytes if stats is not None else None,
            hit_rate=hit_rate,
            usage=stats.usage.copy() if stats is not None else None,
        )
