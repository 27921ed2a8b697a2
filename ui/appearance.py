"""Theme and font size, applied to the whole application."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from app.settings import Settings

_DARK = {
    QPalette.ColorRole.Window: "#202124",
    QPalette.ColorRole.WindowText: "#e8eaed",
    QPalette.ColorRole.Base: "#17181a",
    QPalette.ColorRole.AlternateBase: "#26272b",
    QPalette.ColorRole.Text: "#e8eaed",
    QPalette.ColorRole.Button: "#2b2c30",
    QPalette.ColorRole.ButtonText: "#e8eaed",
    QPalette.ColorRole.Highlight: "#3d6fd8",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.PlaceholderText: "#9aa0a6",
    QPalette.ColorRole.ToolTipBase: "#2b2c30",
    QPalette.ColorRole.ToolTipText: "#e8eaed",
    # Fusion's default links are dark blue: 2.1:1 contrast on this base. These are 8.4:1 and
    # 7.1:1 (WCAG AA asks 4.5:1 for text).
    QPalette.ColorRole.Link: "#8ab4f8",
    QPalette.ColorRole.LinkVisited: "#c58af9",
}
# The keyboard focus: Fusion draws it in the Highlight colour, a thin line that is hard to see
# on dark fields; a 2 px ring in a colour that stands out from both themes' bases. A style
# sheet that styles the focused state styles every state, so the resting frame is set too
# (1 px and 1 px of padding: the text does not move when the ring appears). Text fields and
# lists only: a style sheet on buttons would replace their whole look.
_FIELDS = ("QLineEdit", "QPlainTextEdit", "QTextBrowser", "QListWidget")


def _focus_sheet(rest: str, ring: str) -> str:
    resting = ", ".join(_FIELDS)
    focused = ", ".join(f"{name}:focus" for name in _FIELDS)
    return (
        f"{resting} {{ border: 1px solid {rest}; border-radius: 3px; padding: 1px; }}\n"
        f"{focused} {{ border: 2px solid {ring}; padding: 0px; }}"
    )


_FOCUS_RING = {"dark": _focus_sheet("#5f6368", "#8ab4f8"), "light": _focus_sheet("#a0a0a0", "#1a5fd0")}


def apply_appearance(settings: Settings) -> None:
    app = QApplication.instance()
    if app is None:
        return
    if settings.theme == "system":
        palette = app.style().standardPalette()
    else:
        app.setStyle("Fusion")  # a style that honours every palette role
        palette = app.style().standardPalette()
        if settings.theme == "dark":
            for role, color in _DARK.items():
                palette.setColor(role, QColor(color))
    app.setPalette(palette)
    app.setStyleSheet(_FOCUS_RING.get(settings.theme, ""))
    font = app.font()
    font.setPointSize(settings.font_size)
    app.setFont(font)
