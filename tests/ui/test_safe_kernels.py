"""When the kernel check found llama.cpp's fast kernels crashing, the window and the settings say so."""

from __future__ import annotations

import sys

from app.paths import data_dir
from engine.config import Kernels
from engine.kernel_check import kernel_verdict, probe_command
from ui.settings_dialog import SettingsDialog

SEGFAULT = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]


def test_a_crashing_fast_kernel_loads_in_safe_mode_and_says_why(qtbot, open_window):
    # A real crash of the fast probe child, recorded where the app keeps the verdict.
    kernel_verdict(data_dir(), command=lambda k: SEGFAULT if k is Kernels.FAST else probe_command(k))
    window = open_window()
    assert "safe mode (slower)" in window.model_label.text()
    assert "SIGSEGV" in window.model_label.toolTip()
    assert window.statusBar().currentMessage().startswith("Safe mode")
    dialog = SettingsDialog(
        window.settings, window.catalog, total_ram_bytes=8 << 30, token=None, kernel_note=window.model.kernel_note
    )
    qtbot.addWidget(dialog)
    assert dialog.kernel_label.text().startswith("Safe mode (slower)")
    assert "SIGSEGV" in dialog.kernel_label.toolTip()


def test_where_the_fast_kernels_work_nothing_mentions_safe_mode(qtbot, open_window):
    window = open_window()
    assert "safe mode" not in window.model_label.text()
    assert window.model.kernel_note == ""
