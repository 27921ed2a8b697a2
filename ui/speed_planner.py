"""The speed prediction for the window: computed and measured off the GUI thread.

The plan (app/speed/memory_plan.py: every model's predicted speed at every budget) takes a
few seconds of trace replays, the disk probe a few more; both run on a plain thread and
come back as queued signals. The latest plan is kept, so the Memory page opens with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.catalog import ModelCatalog
from app.downloads import ModelDownloader
from app.speed.measurements import MachineSpeed, load_machine_speed, measure_disk, save_machine_speed
from app.speed.memory_plan import MemoryPlan, catalog_id_for, catalog_profiles, memory_plan
from engine.experts.footprint import ExpertFootprint
from engine.model_info import inspect_model

log = logging.getLogger(__name__)

MIN_RECORDED_TOKENS = 32


class SpeedPlanner(QObject):
    plan_ready = Signal(object)  # MemoryPlan
    measuring = Signal(bool)  # the disk probe started / ended
    failed = Signal(str)

    def __init__(
        self,
        catalog: ModelCatalog,
        total_ram_bytes: int,
        figures_file: Path,
        models_dir: Callable[[], Path],
        history_dir: Path | None,
    ) -> None:
        super().__init__()
        self.catalog, self.total_ram_bytes = catalog, total_ram_bytes
        self.figures_file, self._models_dir, self.history_dir = figures_file, models_dir, history_dir
        self.plan: MemoryPlan | None = None
        self._lock = threading.Lock()  # one job at a time, in the order asked
        self._identities: dict[Path, tuple[str | None, ExpertFootprint]] = {}  # see _identity

    def machine(self) -> MachineSpeed:
        return load_machine_speed(self.figures_file)

    def refresh(self) -> None:
        """Predict again (after a download, a new usage history); the first time, measure the
        disk before."""
        if self.machine().disk_measured_at is None:
            self.measure_disk()
        else:
            self._start(self._compute_plan)

    def measure_disk(self, model_file: Path | None = None) -> None:
        """Probe the disk (the model file where given), keep the figures, then predict again."""
        self._start(lambda: self._measure(model_file))

    def record_answer(self, model_file: Path, tokens_per_s: float, tokens: int) -> None:
        """Keep the decode speed of an answer given in memory as that model's compute speed.
        Short answers say more about the start-up than the speed: left out."""
        if tokens >= MIN_RECORDED_TOKENS and tokens_per_s > 0:
            self._start(lambda: self._record(model_file, tokens_per_s))

    def _start(self, job: Callable[[], None]) -> None:
        def run() -> None:
            with self._lock:
                try:
                    job()
                except Exception as exc:  # a prediction is advice: never take the window down
                    log.exception("speed prediction failed")
                    self.failed.emit(f"The speed prediction failed: {exc}")

        threading.Thread(target=run, name="speed-planner", daemon=True).start()

    def _compute_plan(self) -> None:
        profiles = catalog_profiles(self.catalog, self._models_dir(), self.history_dir)
        self.plan = memory_plan(profiles, self.machine(), self.total_ram_bytes)
        self.plan_ready.emit(self.plan)

    def _record(self, model_file: Path, tokens_per_s: float) -> None:
        model_id, footprint = self._identity(model_file)
        if model_id is not None:
            machine = self.machine().with_compute(model_id, footprint, tokens_per_s, in_memory=True)
            save_machine_speed(self.figures_file, machine)
            self.plan = None  # predicted from the old figure: the Memory page asks again

    def _identity(self, model_file: Path) -> tuple[str | None, ExpertFootprint]:
        """Which catalog model a file is, and its footprint: its header (megabytes of tokenizer
        metadata) is read once per file, not after every answer that records a speed."""
        known = self._identities.get(model_file)
        if known is None:
            info = inspect_model(model_file)
            known = self._identities[model_file] = (catalog_id_for(info), ExpertFootprint.of_model(info))
        return known

    def _measure(self, model_file: Path | None) -> None:
        self.measuring.emit(True)
        try:
            models_dir = self._models_dir()
            if model_file is None:  # a model file is the truest sample of the disk; any will do
                files = [ModelDownloader(models_dir).local_path(e) for e in self.catalog.entries]
                model_file = next((f for f in files if f is not None), None)
            reads = measure_disk(models_dir, model_file)
            save_machine_speed(self.figures_file, self.machine().with_disk(reads))
        except OSError as exc:
            self.failed.emit(f"The disk could not be measured: {exc}")
        finally:
            self.measuring.emit(False)
        self._compute_plan()
