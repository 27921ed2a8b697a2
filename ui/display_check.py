"""Find out, before Qt does, whether a window can be shown at all.

Without a display Qt's xcb plugin aborts the whole process with a core dump; a person
deserves a sentence instead.
"""

from __future__ import annotations

import ctypes.util
import os
import sys


def display_problem() -> str | None:
    """A message saying why no window can open here, or None when one can."""
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None  # wayland, offscreen, vnc ...: Qt reports its own problems clearly
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return (
            "No display found (neither DISPLAY nor WAYLAND_DISPLAY is set), so the window cannot open. "
            "Run SmallThinker from a desktop session, or use the headless subcommands "
            "(see `smallthinker --help`)."
        )
    if not os.environ.get("WAYLAND_DISPLAY") and ctypes.util.find_library("xcb-cursor") is None:
        return (
            "Qt needs the system library libxcb-cursor to open a window on X11. "
            "Install it (Debian/Ubuntu: `sudo apt-get install libxcb-cursor0`) and start SmallThinker again."
        )
    return None
