"""The conversation list's dates: a short one at the right of each title ("14:05", "Yesterday",
"Mon", "12 Nov", "12 Nov 2025"), drawn by a delegate so that the item's text stays the title."""

from __future__ import annotations

import time
from datetime import date, datetime

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QStyle, QStyledItemDelegate

DATE_ROLE = Qt.ItemDataRole.UserRole + 1  # the item's last-message time (seconds since the epoch)


def when(timestamp: float, today: date | None = None) -> str:
    moment = datetime.fromtimestamp(timestamp)
    today = today or date.today()
    days = (today - moment.date()).days
    if days <= 0:
        return moment.strftime("%H:%M")
    if days == 1:
        return "Yesterday"
    if days < 7:
        return moment.strftime("%a")
    if moment.year == today.year:
        return f"{moment.day} {moment.strftime('%b')}"
    return f"{moment.day} {moment.strftime('%b %Y')}"


def full_date(timestamp: float) -> str:
    return time.strftime("%A %d %B %Y, %H:%M", time.localtime(timestamp))


class DatedItemDelegate(QStyledItemDelegate):
    """The title as usual but elided short of the date, the date right-aligned in a muted colour."""

    _GAP = 18  # pixels between the title and the date, and the date and the edge

    def initStyleOption(self, option, index) -> None:  # noqa: N802 - Qt's name
        super().initStyleOption(option, index)
        stamp = index.data(DATE_ROLE)
        if stamp is not None:
            room = option.rect.width() - option.fontMetrics.horizontalAdvance(when(float(stamp))) - 2 * self._GAP
            option.text = option.fontMetrics.elidedText(option.text, Qt.TextElideMode.ElideRight, max(room, 0))

    def paint(self, painter, option, index) -> None:
        super().paint(painter, option, index)
        stamp = index.data(DATE_ROLE)
        if stamp is None:
            return
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.PlaceholderText
        painter.save()
        painter.setPen(option.palette.color(role))
        area = option.rect.adjusted(0, 0, -self._GAP // 3, 0)
        painter.drawText(area, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, when(float(stamp)))
        painter.restore()
