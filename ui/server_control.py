"""The local OpenAI-compatible server as the settings ask for it, and its status-bar label."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QLabel

from app.errors import AppError
from app.hf_token import TokenStore
from app.server.config import ServerSettings
from app.server.host import EngineHost, HostState
from app.server.runner import RunningServer
from app.settings import Settings

log = logging.getLogger(__name__)


def server_settings(settings: Settings, api_key: str) -> ServerSettings:
    host = "0.0.0.0" if settings.server_on_network else "127.0.0.1"
    return ServerSettings(host=host, port=settings.server_port, api_key=api_key)


class ServerControl(QObject):
    def __init__(self, host: EngineHost, keys: TokenStore, parent=None) -> None:
        super().__init__(parent)
        self.host, self.keys = host, keys
        self.server: RunningServer | None = None
        self.label = QLabel()
        self.label.setAccessibleName("local server")
        self.label.hide()

    def apply(self, settings: Settings) -> str:
        """Start, restart or stop the server; return a sentence for the status bar ("" if nothing
        changed). A server that cannot start raises AppError saying why (a port in use, ...)."""
        wanted = server_settings(settings, self.keys.load() or "") if settings.server_enabled else None
        if self.server is not None and wanted == self.server.settings:
            return ""
        self.stop()
        if wanted is None:
            return ""
        try:
            self.server = RunningServer(self.host, wanted).start()
        except AppError as exc:
            raise AppError(f"The local server did not start: {exc}. Change it in Settings > Server.") from None
        self._show(self.host.state())
        return "Local server started (Settings > Server)"

    @property
    def base_url(self) -> str | None:
        return self.server.base_url if self.server is not None else None

    @Slot(object)
    def host_changed(self, state: HostState) -> None:
        self._show(state)

    def _show(self, state: HostState | None) -> None:
        if self.server is None:
            self.label.hide()
            return
        text = f"Serving on {self.server.settings.host}:{self.server.port}"
        if state is not None and state.busy_with == "server":
            text += " · answering a request"
        if state is not None and state.waiting:
            text += f" · {state.waiting} waiting"
        self.label.setText(text)
        self.label.setToolTip(f"OpenAI-compatible API at {self.server.base_url} (Settings > Server)")
        self.label.show()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.label.hide()
