"""The Memory page's prediction and chart, the live panel, and the recommendation the prediction changes."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import QAbstractSlider, QApplication

from app.catalog import GIB, ModelCatalog
from app.hardware import HardwareProbe
from app.live_stats import LiveSample, LiveStatsSampler
from app.model_choice import recommend
from app.speed.measurements import ComputeSpeed, MachineSpeed
from app.speed.memory_plan import budget_speed, memory_plan
from app.speed.profiles import model_profile, shape_footprint
from engine.config import EngineConfig, MemoryMode, SamplingParams
from engine.engine import Engine
from engine.model_info import inspect_model
from ui.live_panel import LivePanel
from ui.memory_page import MemoryPage

CATALOG = ModelCatalog.load()


def measured(disk_gbps: float = 2.0, four_b_tps: float = 20.0, read_cpu: float = 0.3) -> MachineSpeed:
    compute = {"4b": ComputeSpeed(shape_footprint("4b").active_bytes_per_token, in_memory_tps=four_b_tps)}
    return MachineSpeed(disk_gbps=disk_gbps, read_cpu_s_per_gb=read_cpu, disk_measured_at=43200.0, compute=compute)


def record_history(model_path, folder) -> None:
    """A real session within a budget: the engine keeps its expert usage when it closes."""
    info = inspect_model(model_path)
    budget = int(info.file_size * 0.6)
    config = EngineConfig(
        n_ctx=512, memory_mode=MemoryMode.FILE_BACKED, expert_budget_bytes=budget, expert_history_dir=folder
    )
    with Engine(model_path, config) as engine:
        for seed in (1, 2, 3):
            engine.chat(
                [{"role": "user", "content": f"Tell me a story {seed}"}], SamplingParams(max_tokens=60, seed=seed)
            )


def test_the_page_draws_a_curve_from_a_recorded_history_and_the_slider_says_the_speed(
    qtbot, tmp_path, small_moe_model_path
):
    record_history(small_moe_model_path, tmp_path)
    info = inspect_model(small_moe_model_path)
    profile = model_profile(CATALOG.get("4b"), info, tmp_path)
    assert profile.usage_source.startswith("your usage history")
    fp = profile.footprint
    # Budgets holding 16 to 64 experts (the small model's own scale: a layer's to all), then in memory.
    steps = [profile.kv_bytes + _budget_for(fp, n) for n in (16, 32, 48, 64)]
    steps.append(profile.file_bytes + profile.kv_bytes + (1 << 30))
    plan = memory_plan([profile], measured(disk_gbps=0.5), 2 * steps[-1], steps=steps)
    page = MemoryPage(0.0, plan.total_ram_bytes, 5.0, CATALOG, steps=steps)
    qtbot.addWidget(page)
    page.set_plan(plan)
    x, y = page.curve_points("4b")
    assert x == [s / GIB for s in steps] and all(not math.isnan(v) for v in y)
    assert [p.experts_resident for p in plan.curves[0].points[:4]] == [0.25, 0.5, 0.75, 1.0]
    assert y == sorted(y) and y[0] < y[1] < y[-2] < y[-1]  # more experts in memory, faster; in memory fastest
    figures = []
    for position in (1, 3, len(steps)):
        page.slider.setValue(position)
        figures.append(page.figure_text())
    assert len(set(figures)) == 3 and all("tokens/s" in f for f in figures)
    assert "of experts in memory" in figures[0] and "wholly in memory" in figures[-1]
    assert f"about {y[0]:.0f} tokens/s" in figures[0]
    assert "your usage history" in page.source_label.text()


def _budget_for(fp, n_experts: int) -> int:
    """The weights budget whose capacity is `n_experts` (the manager keeps a margin of 0.5% + 4 MiB)."""
    budget = int((fp.fixed_bytes + n_experts * fp.expert_bytes + (4 << 20)) / (1 - 1 / 200)) + 1024
    assert fp.capacity(budget) == n_experts
    return budget


def test_the_slider_steps_through_sensible_budgets(qtbot):
    page = MemoryPage(3.3, 16 * GIB, 5.0, CATALOG)
    qtbot.addWidget(page)
    assert page.budget_gib() == 3.5  # an old setting snaps to the nearest step
    page.set_budget_gib(0)
    page.slider.triggerAction(QAbstractSlider.SliderAction.SliderPageStepAdd)  # Page Up from Automatic
    assert page.budget_gib() == 1.5  # not 10 GiB
    steps = [page.steps[i] / GIB for i in range(len(page.steps))]
    assert steps[:6] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5] and steps[-1] == 16


class FakeStatsSource(QObject):
    """Samples a thread of its own emits, as the real sampler does."""

    sampled = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.running = threading.Event()
        self.emitted_from: set[int] = set()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.running.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.running.clear()
        if self.thread is not None:
            self.thread.join()  # no sample is emitted once stop returns

    def _run(self) -> None:
        usage = np.arange(6 * 8).reshape(6, 8)
        n = 0
        while self.running.is_set():
            n += 1
            self.emitted_from.add(threading.get_ident())
            self.sampled.emit(LiveSample(time.monotonic(), 10.0 + n, 700 << 20, 1 << 30, 0.9, usage * n))
            time.sleep(0.02)


class ThreadRecorder(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[QThread] = set()

    @Slot(object)
    def sampled(self, _sample) -> None:
        self.threads.add(QThread.currentThread())


def test_the_live_panel_draws_samples_sent_from_another_thread_while_the_gui_keeps_running(qtbot):
    source = FakeStatsSource()
    panel = LivePanel(source)
    qtbot.addWidget(panel)
    recorder = ThreadRecorder()  # a receiver living on the GUI thread, like the panel
    source.sampled.connect(recorder.sampled)
    ticks = []
    timer = QTimer(interval=10, timeout=lambda: ticks.append(time.monotonic()))
    timer.start()
    panel.show()  # starts the source
    # The GUI's own timer keeps firing while samples pour in (a blocked GUI thread would stop it).
    qtbot.waitUntil(lambda: panel.figures_shown()["samples"] >= 20 and len(ticks) >= 10, timeout=20_000)
    panel.hide()  # stops it
    timer.stop()
    shown = panel.figures_shown()
    assert shown["tokens_per_s"] > 10 and shown["heatmap_shape"] == (6, 8)
    assert "0.68 GiB of a 1.00 GiB budget" in shown["summary"] and "90% of expert uses" in shown["summary"]
    assert threading.main_thread().ident not in source.emitted_from  # sampled elsewhere...
    assert recorder.threads == {QApplication.instance().thread()}  # ...drawn on the GUI thread
    QApplication.processEvents()  # samples emitted before the source stopped arrive now
    count = panel.figures_shown()["samples"]
    QApplication.processEvents()
    assert panel.figures_shown()["samples"] == count and not source.thread.is_alive()


def test_the_sampler_reads_a_budgeted_engine(small_moe_model_path):
    info = inspect_model(small_moe_model_path)
    config = EngineConfig(n_ctx=512, memory_mode=MemoryMode.FILE_BACKED, expert_budget_bytes=int(info.file_size * 0.6))
    samples: list[LiveSample] = []
    with Engine(small_moe_model_path, config) as engine:
        sampler = LiveStatsSampler(lambda: engine, samples.append)
        sampler.sample(engine)
        engine.chat([{"role": "user", "content": "Hello"}], SamplingParams(max_tokens=30, seed=1))
        sample = sampler.sample(engine)
    assert sample.tokens_per_s > 0 and sample.budget_bytes == int(info.file_size * 0.6)
    assert 0 < sample.hit_rate <= 1 and sample.usage.shape == (info.n_layer, info.n_expert) and sample.usage.sum() > 0
    assert 0 < sample.resident_bytes <= sample.budget_bytes * 1.05


def test_the_first_run_page_offers_the_21b_once_the_prediction_says_it_runs_well(qtbot, open_window):
    window = open_window()
    window.first_run.probe = HardwareProbe(11 * GIB, 8 * GIB, 500 * GIB, 4, 8, frozenset({"avx2"}), "x86_64")
    profiles = [model_profile(e) for e in CATALOG.entries]
    # A fast NVMe drive and CPU (cheap reads) against a slow disk, the same compute.
    for disk, read_cpu, expected in ((0.2, 0.3, "4b"), (10.0, 0.05, "21b")):
        plan = memory_plan(profiles, measured(disk_gbps=disk, four_b_tps=60.0, read_cpu=read_cpu), 11 * GIB)
        window.speed.plan_ready.emit(plan)
        assert window.first_run.model_choice.currentData() == expected
        assert f"your disk reads {disk:.1f} GB/s" in window.first_run.reason.text()
    assert recommend(window.first_run.probe, CATALOG, budget_speed(plan, 5.0)).model_id == "21b"
