"""The one loaded engine and whose turn it is to use it.

llama.cpp answers one request at a time and the engine keeps one live KV cache, so every
user of the engine (the window's chat and summaries, each server request) takes a turn:
first come, first served. A turn holds the engine for a whole answer; whoever waits can
give up (a client that disconnected while queued). The window follows `on_change` to
show when the server is answering.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.errors import AppError
from engine.engine import Engine


class NoModelError(AppError):
    """No model is loaded."""


class TurnCancelledError(AppError):
    """The caller gave up while waiting for its turn."""


def model_id_for(path: str | Path) -> str:
    """The name clients ask for: the file's name without .gguf."""
    return Path(path).stem


@dataclass(frozen=True)
class HostState:
    busy_with: str | None  # "chat", "server", ... or None when idle
    waiting: int  # turns queued behind it
    model_id: str | None


class EngineHost:
    def __init__(self) -> None:
        self._engine: Engine | None = None
        self.model_id: str | None = None
        self._cond = threading.Condition()
        self._next = 0  # the ticket the next caller takes
        self._serving = 0  # the ticket whose turn it is
        self._abandoned: set[int] = set()  # tickets whose holders gave up waiting
        self._busy_with: str | None = None
        self._listeners: list[Callable[[HostState], None]] = []

    # --- the model -----------------------------------------------------------------------
    def set_engine(self, engine: Engine | None, model_id: str | None = None) -> Engine | None:
        """Install a newly loaded engine (or none); return the previous one for its owner to close.

        Waits for the turn in progress to end, so nobody is answering with the old engine.
        """
        with self.turn("loading"):
            previous, self._engine = self._engine, engine
            self.model_id = model_id if engine is not None else None
        return previous

    @property
    def engine(self) -> Engine | None:
        return self._engine

    # --- turns -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def turn(self, who: str, cancel: threading.Event | None = None) -> Iterator[Engine | None]:
        """Wait for our turn (first come, first served) and hold the engine during the block.

        With `cancel`, a wait that is given up raises TurnCancelledError.
        """
        with self._cond:
            ticket = self._next
            self._next += 1
            try:
                while self._serving != ticket:
                    if cancel is not None and cancel.is_set():
                        raise TurnCancelledError("the request was cancelled while it waited")
                    self._cond.wait(timeout=0.05 if cancel is not None else None)
            except BaseException:
                self._abandoned.add(ticket)
                raise
            self._busy_with = who
        self._notify()
        try:
            yield self._engine
        finally:
            with self._cond:
                self._busy_with = None
                self._advance()
            self._notify()

    def use(self, who: str, cancel: threading.Event | None = None):
        """Like `turn`, but a turn without a model raises NoModelError."""
        return _require_model(self.turn(who, cancel))

    def _advance(self) -> None:
        """The next ticket's turn; an abandoned one is skipped."""
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    # --- who is answering --------------------------------------------------------------------------
    def state(self) -> HostState:
        with self._cond:
            queued = self._next - self._serving - len(self._abandoned)
            waiting = max(0, queued - (1 if self._busy_with is not None else 0))
            return HostState(self._busy_with, waiting, self.model_id)

    def add_listener(self, listener: Callable[[HostState], None]) -> None:
        """Called on whichever thread starts or ends a turn; keep it short and thread-safe."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        state = self.state()
        for listener in list(self._listeners):
            with contextlib.suppress(Exception):
                listener(state)


@contextlib.contextmanager
def _require_model(turn):
    with turn as engine:
        if engine is None:
            raise NoModelError("no model is loaded")
        yield engine
