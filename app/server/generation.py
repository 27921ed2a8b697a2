"""One request's answer: the engine's synchronous stream on a thread, read from asyncio.

The request waits for its turn at the engine (EngineHost), then a thread iterates the
engine's stream and hands each chunk to the event loop. Closing the async side (the
client went away, or the answer hit a stop sequence) sets the engine's cancel event: the
engine checks it before every token, so at most the token being computed is wasted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from app.server.errors import ApiError
from app.server.host import EngineHost, NoModelError, TurnCancelledError
from engine.chunks import Chunk
from engine.config import ConfigError
from engine.engine import Engine
from engine.errors import EngineError
from engine.prompt_builder import ContextOverflowError

_END = object()


@dataclass
class JobRecord:
    """What one request cost the engine (the last ones are kept for the window and tests)."""

    kind: str
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    ended_at: float | None = None
    tokens: int = 0
    cancelled_at_token: int | None = None  # tokens generated when the client went away
    # How to stop it and wait for it (the server's shutdown, before the engine is closed).
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def tokens_after_cancel(self) -> int:
        return 0 if self.cancelled_at_token is None else self.tokens - self.cancelled_at_token


class Activity:
    def __init__(self, keep: int = 64) -> None:
        self.jobs: collections.deque[JobRecord] = collections.deque(maxlen=keep)
        self.served = 0
        self._lock = threading.Lock()

    def new(self, kind: str) -> JobRecord:
        record = JobRecord(kind)
        with self._lock:
            self.jobs.append(record)
            self.served += 1
        return record

    def stop_all(self, timeout: float = 10.0) -> None:
        """Cancel every answer still running and wait for its thread: after this, whoever owns
        the engine may close it (a thread still decoding on a closed model would crash)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            running = [job for job in self.jobs if job.ended_at is None and job.thread is not None]
        for job in running:
            job.cancel.set()
        for job in running:
            job.thread.join(max(0.0, deadline - time.monotonic()))


class Generation:
    """Chunks of one answer, `async for`; `close()` (or leaving the loop early) cancels it."""

    def __init__(self, host: EngineHost, record: JobRecord, run: Callable[[Engine, threading.Event], Iterator[Chunk]]):
        self._host, self._record, self._run = host, record, run
        self._cancel = record.cancel
        self._queue: asyncio.Queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._first: object | None = None
        record.thread = threading.Thread(target=self._work, name="server-answer", daemon=True)
        record.thread.start()

    @classmethod
    async def start(cls, host, record, run) -> Generation:
        """Wait for the turn and the first chunk, so that a refusal is an HTTP error, not a broken stream."""
        generation = cls(host, record, run)
        try:
            generation._first = await generation._next()
        except BaseException:
            generation.close()
            raise
        return generation

    def _work(self) -> None:
        record = self._record
        try:
            with self._host.use("server", self._cancel) as engine:
                record.started_at = time.monotonic()
                for chunk in self._run(engine, self._cancel):
                    if not chunk.is_final:
                        record.tokens += 1
                    self._put(chunk)
        except BaseException as exc:  # handed to the request; nothing may escape a thread
            self._put(exc)
        finally:
            record.ended_at = time.monotonic()
            self._put(_END)

    def _put(self, item) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server is stopping
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def _next(self):
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise _as_api_error(item)
        return item

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Chunk]:
        try:
            item = self._first
            while item is not _END:
                yield item
                item = await self._next()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the answer (its final chunk, with the figures, still comes when iterating on)."""
        if not self._cancel.is_set():
            if self._record.ended_at is None:
                self._record.cancelled_at_token = self._record.tokens
            self._cancel.set()


def _as_api_error(exc: BaseException) -> BaseException:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NoModelError):
        return ApiError(
            503, "No model is loaded. Load one in SmallThinker Desktop, or start `smallthinker serve --model`."
        )
    if isinstance(exc, TurnCancelledError):
        return ApiError(503, str(exc))
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), code="context_length_exceeded")
    if isinstance(exc, ConfigError):
        return ApiError(400, str(exc))
    if isinstance(exc, EngineError):
        return ApiError(503, f"The model could not answer: {exc}")
    return exc
