"""The server on a thread of its own (uvicorn), started and stopped by the app or the CLI."""

from __future__ import annotations

import contextlib
import threading
import time

import uvicorn

from app.server.api import create_app
from app.server.config import ServerConfigError, ServerSettings
from app.server.generation import Activity
from app.server.host import EngineHost

_START_TIMEOUT_S = 10.0


class RunningServer:
    def __init__(self, host: EngineHost, settings: ServerSettings, activity: Activity | None = None) -> None:
        settings.check()
        self.settings = settings
        self.activity = activity or Activity()
        self.app = create_app(host, settings, self.activity)
        config = uvicorn.Config(
            self.app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.port = settings.port

    def start(self) -> RunningServer:
        """Listen; a port already in use (or not ours to bind) raises ServerConfigError."""
        self._thread = threading.Thread(target=self._run, name="openai-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerConfigError(
                    f"cannot listen on {self.settings.host} port {self.settings.port}: "
                    "it is in use or not allowed; choose another port"
                )
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = sockets[0].getsockname()[1]  # port 0 asks for any free one
        return self

    def _run(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind; start() reports it
            self._server.run()

    @property
    def base_url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}/v1"

    def stop(self) -> None:
        """Stop listening, then end the answers still running (their engine may be closed next)."""
        self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.activity.stop_all()

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
