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
}


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
    font = app.font()
    font.setPointSize(settings.font_size)
    app.setFont(font)
