"""Find out, before Qt does, whether a window can be shown at all.

Without a display, or without one of the system libraries its X11 plugin needs, Qt
aborts the whole process with a core dump; a person deserves a sentence instead.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path

# What Qt 6's xcb plugin needs beyond libxcb itself (Debian/Ubuntu package names).
QT_X11_PACKAGES = "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0"


def missing_library_message(error: OSError) -> str:
    """A sentence naming the library the dynamic loader could not find."""
    match = re.search(r"(lib[\w+.-]+?\.so(?:\.\d+)*)", str(error))
    library = match.group(1) if match else "a system library"
    return (
        f"Qt cannot open a window on X11: {library} is missing. "
        f"On Debian or Ubuntu install Qt's X11 libraries: sudo apt-get install {QT_X11_PACKAGES}"
    )


def _xcb_plugin_problem() -> str | None:
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if not plugin.exists():
        return None  # a build without the plugin: let Qt explain
    try:
        ctypes.CDLL(str(plugin))  # the loader names the first missing dependency
    except OSError as exc:
        return missing_library_message(exc)
    return None


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
    if os.environ.get("WAYLAND_DISPLAY") and not platform:
        return None  # Qt prefers Wayland there
    return _xcb_plugin_problem()
