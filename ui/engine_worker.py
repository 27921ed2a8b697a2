"""The engine on a thread of its own, for the app's whole life.

One worker QObject is moved onto a QThread (the gpt4all pattern): requests arrive as
queued signals, so the GUI thread never waits on llama.cpp, the disk or the network.
Stop is a threading.Event the GUI sets directly, because the worker's event loop is
busy while it generates. Streamed text is coalesced to about 30 updates a second.
Signals carry plain values and frozen dataclasses only.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal, Slot

from app.documents import read_document
from app.errors import AppError
from app.remote_engine import RemoteEngine
from app.server.host import EngineHost, NoModelError, TurnCancelledError, model_id_for
from app.summarizer import Summarizer
from engine.chunks import ChatStats
from engine.config import EngineConfig, SamplingParams
from engine.engine import Engine
from engine.errors import EngineError
from engine.memory_report import MemoryReport
from ui.worker_thread import WorkerThread

log = logging.getLogger(__name__)

_EMIT_INTERVAL = 1 / 30
REMOTE_MODE = "remote"  # LoadedModel.memory_mode of a model answered by another server


@dataclass(frozen=True)
class LoadedModel:
    name: str
    path: str
    context_length: int
    memory_mode: str
    load_seconds: float
    kernel_note: str = ""  # why llama.cpp's slower safe kernels are in use; "" when they are not


@dataclass(frozen=True)
class AnswerDone:
    text: str
    finish_reason: str  # stop, length, cancelled, context-full
    stats: ChatStats
    notice: str


class EngineWorker(QObject):
    loaded = Signal(object)  # LoadedModel
    load_failed = Signal(str)
    load_refused = Signal(str)  # the file failed its checks; the model loaded before stays
    load_progress = Signal(int)  # percent
    text_streamed = Signal(str)  # coalesced new text of the answer
    speed_changed = Signal(float)  # tokens/s of the answer so far, with each text_streamed
    answer_done = Signal(object)  # AnswerDone
    answer_failed = Signal(str)
    summary_progress = Signal(object)  # SummaryProgress
    summary_done = Signal(object)  # SummaryResult (cancelled ones too: their parts are kept)
    summary_failed = Signal(str)
    host_changed = Signal(object)  # HostState: who is using the engine (the chat, the server), who waits

    def __init__(self) -> None:
        super().__init__()
        # The loaded engine, shared with the local server: the chat and each server request
        # take turns at it (app/server/host.py).
        self.host = EngineHost()
        self.host.add_listener(self.host_changed.emit)  # from any thread; Qt queues it to the GUI
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()  # the GUI thread reads memory reports
        self._stop = threading.Event()

    # --- called directly from the GUI thread ---------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def current_engine(self):
        """The model answering now (an Engine, a RemoteEngine) or None; for samplers that only read."""
        with self._engine_lock:
            return self._engine

    def memory_report(self) -> MemoryReport | None:
        with self._engine_lock:
            return self._engine.memory_report(fresh=False) if self._engine is not None else None

    # --- slots, run on the worker thread ---------------------------------------------------------
    @Slot(str, object)
    def load(self, path: str, config: EngineConfig) -> None:
        try:
            checked = Engine.preflight(path, config)  # a file refused here leaves the loaded model as it is
        except (EngineError, OSError) as exc:
            self._refuse(str(exc))
            return
        try:
            self._unload()
            last_percent = [-1]

            def report(fraction: float) -> None:
                percent = int(fraction * 100)
                if percent != last_percent[0]:  # a few hundred tensors: emit whole percents only
                    last_percent[0] = percent
                    self.load_progress.emit(percent)

            engine = Engine(path, config, on_load_progress=report, checked=checked)
        except (EngineError, OSError) as exc:
            self.load_failed.emit(str(exc))
            return
        except Exception as exc:  # the thread boundary: report, never die silently
            log.exception("loading %s failed", path)
            self.load_failed.emit(f"Loading the model failed unexpectedly: {exc}")
            return
        with self._engine_lock:
            self._engine = engine
        self.host.set_engine(engine, model_id_for(path))
        info = engine.info
        self.loaded.emit(
            LoadedModel(
                info.name,
                str(info.path),
                engine.n_ctx,
                engine.memory_mode.value,
                engine.load_seconds,
                engine.kernel_note,
            )
        )

    @Slot(str, str, str, int)
    def use_remote(self, base_url: str, api_key: str, model: str, n_ctx: int) -> None:
        """Answer through another OpenAI-compatible server instead of a local model."""
        started = time.perf_counter()
        try:  # connect first: a server that cannot be reached leaves the loaded model as it is
            remote = RemoteEngine(base_url, api_key, model, n_ctx=n_ctx)
        except AppError as exc:
            self._refuse(str(exc))
            return
        except Exception as exc:  # the thread boundary
            log.exception("connecting to %s failed", base_url)
            self.load_failed.emit(f"Connecting to {base_url} failed unexpectedly: {exc}")
            return
        self._unload()
        with self._engine_lock:
            self._engine = remote
        self.host.set_engine(remote, remote.model)
        self.loaded.emit(LoadedModel(remote.model, base_url, n_ctx, REMOTE_MODE, time.perf_counter() - started))

    @Slot(object, object)
    def generate(self, messages: tuple[tuple[str, str], ...], sampling: SamplingParams) -> None:
        self._stop.clear()
        try:
            with self.host.use("chat", self._stop) as engine:  # after any server request in progress
                chat = [{"role": role, "content": content} for role, content in messages]
                self._stream(engine.stream_chat(chat, sampling, self._stop))
        except NoModelError:
            self.answer_failed.emit("No model is loaded yet.")
        except TurnCancelledError:
            self.answer_failed.emit("Stopped before the answer began (the local server was answering a request).")
        except (AppError, EngineError) as exc:  # AppError: a remote server's refusal, in words
            self.answer_failed.emit(str(exc)[:1].upper() + str(exc)[1:])
        except Exception as exc:
            log.exception("generation failed")
            self.answer_failed.emit(f"The answer failed unexpectedly: {exc}")

    def _stream(self, chunks) -> None:
        parts: list[str] = []
        pending: list[str] = []
        last_emit = time.monotonic()
        first_token: float | None = None
        for n, chunk in enumerate(chunks):
            parts.append(chunk.text)
            pending.append(chunk.text)
            now = time.monotonic()
            first_token = first_token or now
            if pending and (now - last_emit >= _EMIT_INTERVAL or chunk.is_final):
                self.text_streamed.emit("".join(pending))
                if n and now > first_token:
                    self.speed_changed.emit(n / (now - first_token))
                pending.clear()
                last_emit = now
            if chunk.is_final:
                self.answer_done.emit(AnswerDone("".join(parts), chunk.finish_reason.value, chunk.stats, chunk.notice))

    @Slot(str, object)
    def summarize(self, path: str, sampling: SamplingParams) -> None:
        """Summarise a document with the loaded model; Stop cancels within the section."""
        self._stop.clear()
        try:
            document = read_document(path)
            with self.host.use("summary", self._stop) as engine:
                result = Summarizer(engine, sampling=sampling).summarize(
                    document, self.summary_progress.emit, self._stop
                )
            self.summary_done.emit(result)
        except NoModelError:
            self.summary_failed.emit("Load a model first (File > Open GGUF file…).")
        except TurnCancelledError:
            self.summary_failed.emit("Stopped before the summary began (the local server was answering a request).")
        except (AppError, EngineError) as exc:
            self.summary_failed.emit(str(exc))
        except Exception as exc:
            log.exception("summarising %s failed", path)
            self.summary_failed.emit(f"Summarising failed unexpectedly: {exc}")

    def _refuse(self, message: str) -> None:
        """Another model could not be had: the one loaded (if any) stays, and the window says so."""
        (self.load_refused if self._engine is not None else self.load_failed).emit(message)

    def _unload(self) -> None:
        """Close the loaded engine, once no server request is using it."""
        self.host.set_engine(None)
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    @Slot()
    def unload(self) -> None:
        self._unload()

    @Slot()
    def shutdown(self) -> None:
        self._unload()


class EngineThread(WorkerThread):
    """The engine worker's thread; the GUI talks to the worker through these signals."""

    request_load = Signal(str, object)
    request_remote = Signal(str, str, str, int)
    request_unload = Signal()
    request_generate = Signal(object, object)
    request_summarize = Signal(str, object)
    request_shutdown = Signal()

    def __init__(self) -> None:
        super().__init__(EngineWorker(), "engine")
        self.request_load.connect(self.worker.load)
        self.request_remote.connect(self.worker.use_remote)
        self.request_unload.connect(self.worker.unload)
        self.request_generate.connect(self.worker.generate)
        self.request_summarize.connect(self.worker.summarize)
        self.request_shutdown.connect(self.worker.shutdown)
        self.start()

    def stop(self) -> None:
        """Stop any answer, free the model, and end the thread (waits for it)."""
        self.worker.request_stop()
        self.request_shutdown.emit()
        self.end()
