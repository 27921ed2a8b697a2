"""The settings' Memory page: the budget slider with each model's predicted speed, and a chart.

The slider stops at the budgets of the plan (app/speed/predict.py: half GiB steps up to
4 GiB, then wider); as it moves, a line per model says what that budget gives ("about 9
tokens/s, 63% of experts in memory"). The chart draws predicted tokens/s against the
budget for every model, downloaded or not, with the budget chosen, the point where each
model fits wholly in memory, the machine's RAM and what the system keeps, and the speed
below which a model is not offered in memory-budget mode. The plan comes from the window's
SpeedPlanner (computed off the GUI thread); until it arrives the page says so.
"""

from __future__ import annotations

import math
from dataclasses import fields

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from app.catalog import GIB, ModelCatalog
from app.model_choice import budget_summary
from app.settings import Settings
from app.speed.memory_plan import MemoryPlan, describe, gib
from app.speed.predict import budget_steps

MIN_TPS_BOUNDS = next(f.metadata["bounds"] for f in fields(Settings) if f.name == "min_usable_tps")
# One colour per model, readable on light and dark backgrounds.
CURVE_COLOURS = ("#2f7ed8", "#e4572e", "#4caf50", "#9c27b0")


class MemoryPage(QWidget):
    measure_requested = Signal()

    def __init__(
        self,
        budget_gib: float,
        total_ram_bytes: int,
        min_tps: float,
        catalog: ModelCatalog,
        platform_note: str = "",
        steps: list[int] | None = None,
    ) -> None:
        """`steps`: the budgets the slider stops at (those of the plans it will be sent); by
        default the ones for this much RAM."""
        super().__init__()
        self.catalog = catalog
        self.steps = steps or budget_steps(total_ram_bytes)
        self.plan: MemoryPlan | None = None
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setAccessibleName("memory budget")
        self.slider.setRange(0, len(self.steps))  # 0: automatic, then one position per step
        self.slider.setPageStep(2)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setValue(self._position(budget_gib))
        self.budget_label = QLabel()
        self.budget_label.setObjectName("budget-figure")
        self.budget_label.setTextFormat(Qt.TextFormat.PlainText)
        self.budget_label.setWordWrap(True)
        self.budget_label.setMinimumHeight(self.budget_label.fontMetrics().lineSpacing() * 3 + 4)
        self.min_tps = QDoubleSpinBox()
        self.min_tps.setRange(*MIN_TPS_BOUNDS)
        self.min_tps.setSingleStep(0.5)
        self.min_tps.setDecimals(1)
        self.min_tps.setSuffix(" tokens/s")
        self.min_tps.setValue(min_tps)
        self.min_tps.setAccessibleName("slowest usable speed")
        self.min_tps.setToolTip("A model is offered in memory-budget mode only where it is predicted this fast.")
        self.source_label = QLabel("Predicting…")
        self.source_label.setWordWrap(True)
        self.source_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.measure_button = QPushButton("Measure the disk again")
        self.measure_button.setToolTip("Reads a few hundred MB from the disk the models are on (a few seconds)")
        self.measure_button.clicked.connect(self.measure_requested)
        self.chart = self._make_chart()
        self.platform_note = QLabel(platform_note)
        self.platform_note.setWordWrap(True)
        self.platform_note.setVisible(bool(platform_note))
        self._layout()
        self.slider.valueChanged.connect(self._slider_moved)
        self.min_tps.valueChanged.connect(lambda _v: self._draw())
        self._show_figures()

    # --- the controls -------------------------------------------------------------------------------
    def _position(self, budget_gib: float) -> int:
        """The slider position of a budget: the nearest step (0 stays automatic)."""
        if budget_gib <= 0:
            return 0
        distances = [abs(step / GIB - budget_gib) for step in self.steps]
        return 1 + distances.index(min(distances)) if self.steps else 0

    def budget_gib(self) -> float:
        position = self.slider.value()
        return self.steps[position - 1] / GIB if position else 0.0

    def set_budget_gib(self, budget_gib: float) -> None:
        self.slider.setValue(self._position(budget_gib))

    def _slider_moved(self, _position: int) -> None:
        self._show_figures()
        self._move_budget_line()

    def _layout(self) -> None:
        explanation = QLabel(
            "How much memory the model may use: its weights and the conversation's cache. Where a model does "
            "not fit, its least used experts stay on disk and are read as needed, which costs speed. A change "
            "reloads the model."
        )
        explanation.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(explanation)
        layout.addWidget(self.slider)
        layout.addWidget(self.budget_label)
        layout.addWidget(self.chart, stretch=1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Offer a model in memory-budget mode from"))
        row.addWidget(self.min_tps)
        row.addStretch(1)
        row.addWidget(self.measure_button)
        layout.addLayout(row)
        layout.addWidget(self.source_label)
        layout.addWidget(self.platform_note)

    # --- the plan -----------------------------------------------------------------------------------
    def set_plan(self, plan: MemoryPlan) -> None:
        self.plan = plan
        self._draw()
        self._show_figures()

    def set_measuring(self, measuring: bool) -> None:
        self.measure_button.setEnabled(not measuring)
        self.measure_button.setText("Measuring the disk…" if measuring else "Measure the disk again")

    def _budget_bytes(self) -> int:
        """The budget the figures are for; automatic: what the system leaves usable."""
        position = self.slider.value()
        if position:
            return self.steps[position - 1]
        return self.plan.usable_bytes if self.plan is not None else 0

    def _show_figures(self) -> None:
        budget = self._budget_bytes()
        head = f"{gib(budget)} for the model" if self.slider.value() else "Automatic: what is free when a model loads"
        if self.plan is None:
            what_fits = budget_summary(budget or None, self.catalog)
            self.budget_label.setText(f"{what_fits} Predicting the speed…")
            return
        if not self.slider.value():
            head += f" (about {gib(budget)} here)"
        lines = [f"{head}:"]
        for curve in self.plan.curves:
            lines.append(f"{curve.display_name}: {describe(self.plan.at(curve, budget))}")
        self.budget_label.setText("\n".join(lines))
        compute = _per_model({c.display_name: c.compute_source for c in self.plan.curves})
        usage = _per_model({c.display_name: c.profile.usage_source for c in self.plan.curves})
        self.source_label.setText(f"Predicted from: {self.plan.disk_source}; compute {compute}; expert usage: {usage}.")

    def figure_text(self) -> str:
        return self.budget_label.text()

    # --- the chart ----------------------------------------------------------------------------------
    def _make_chart(self) -> pg.PlotWidget:
        palette = self.palette()
        chart = pg.PlotWidget(background=palette.color(QPalette.ColorRole.Base))
        chart.setObjectName("speed-chart")
        chart.setMinimumHeight(220)
        chart.setMenuEnabled(False)
        chart.setMouseEnabled(x=False, y=False)
        chart.hideButtons()
        text = palette.color(QPalette.ColorRole.Text)
        for side in ("left", "bottom"):
            axis = chart.getAxis(side)
            axis.setPen(text)
            axis.setTextPen(text)
        chart.setLabel("bottom", "memory budget (GiB)")
        chart.setLabel("left", "predicted tokens/s")
        chart.showGrid(x=True, y=True, alpha=0.15)
        self.legend = chart.addLegend(offset=(-10, 10), labelTextColor=text)
        self.budget_line = pg.InfiniteLine(
            angle=90, pen=pg.mkPen(text, width=2), label="budget", labelOpts={"position": 0.97, "color": text}
        )
        chart.addItem(self.budget_line)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._extras: list[pg.GraphicsObject] = []
        return chart

    def _draw(self) -> None:
        plan = self.plan
        if plan is None:
            return
        chart, text = self.chart, self.palette().color(QPalette.ColorRole.Text)
        for item in self._extras:
            chart.removeItem(item)
        self._extras.clear()
        x = [step / GIB for step in plan.steps]
        top = 1.0
        for i, curve in enumerate(plan.curves):
            y = [p.tokens_per_s if p.runs else math.nan for p in curve.points]
            colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
            item = self.curves.get(curve.profile.model_id)
            if item is None:
                item = chart.plot(
                    name=curve.display_name, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                    symbolBrush=colour, symbolPen=None, connect="finite",
                )  # fmt: skip
                self.curves[curve.profile.model_id] = item
            item.setData(x, y)
            top = max([top, *[v for v in y if not math.isnan(v)]])
            fits = curve.fits_in_memory_at / GIB
            if fits <= x[-1]:
                marker = pg.InfiniteLine(
                    pos=fits, angle=90, pen=pg.mkPen(colour, style=Qt.PenStyle.DotLine),
                    label=f"{curve.display_name.removeprefix('SmallThinker ')} wholly in memory",
                    labelOpts={"position": 0.75, "color": colour, "rotateAxis": (1, 0)},
                )  # fmt: skip
                self._add(marker)
        dashed = pg.mkPen(text, style=Qt.PenStyle.DashLine)
        usable = plan.usable_bytes / GIB
        self._add(pg.InfiniteLine(pos=usable, angle=90, pen=dashed, label="the system keeps the rest",
                                  labelOpts={"position": 0.6, "color": text, "rotateAxis": (1, 0)}))  # fmt: skip
        self._add(pg.InfiniteLine(pos=plan.total_ram_bytes / GIB, angle=90, pen=dashed, label="RAM",
                                  labelOpts={"position": 0.6, "color": text, "rotateAxis": (1, 0)}))  # fmt: skip
        floor = pg.InfiniteLine(pos=self.min_tps.value(), angle=0, pen=pg.mkPen(text, style=Qt.PenStyle.DotLine),
                                label="usable", labelOpts={"position": 0.03, "color": text})  # fmt: skip
        self._add(floor)
        chart.setXRange(0, plan.total_ram_bytes / GIB, padding=0.02)
        chart.setYRange(0, top * 1.15, padding=0)
        self._move_budget_line()

    def _add(self, item) -> None:
        self.chart.addItem(item)
        self._extras.append(item)

    def _move_budget_line(self) -> None:
        self.budget_line.setValue(self._budget_bytes() / GIB)
        self.budget_line.setVisible(self._budget_bytes() > 0)

    def curve_points(self, model_id: str) -> tuple[list[float], list[float]]:
        """The drawn (budget GiB, tokens/s) of one model, for tests and the screenshot script."""
        x, y = self.curves[model_id].getData()
        return list(x), list(y)


def _per_model(sources: dict[str, str]) -> str:
    """One phrase when every model's source is the same, else one per model."""
    if len(set(sources.values())) == 1:
        return next(iter(sources.values()))
    return ", ".join(f"{source} ({name.removeprefix('SmallThinker ')})" for name, source in sources.items())
