"""`smallthinker --self-test [MODEL.gguf]`: prove an installed app works, without a display.

Starts the real window offscreen over a temporary data folder (the user's conversations and
settings are not touched), loads the model given (or a tiny synthetic one written to the
temporary folder), sends a message, waits for the streamed answer, and exits 0 with one
line of figures, or 1 with what failed. Installers and the packaging test run it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def run_self_test(model: str | None, timeout_s: float = 300.0) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="smallthinker-self-test-") as folder:
        os.environ["SMALLTHINKER_DATA_DIR"] = str(Path(folder) / "data")
        os.environ["SMALLTHINKER_CONFIG_DIR"] = str(Path(folder) / "config")
        try:
            return _run(model, Path(folder), timeout_s)
        except Exception as exc:  # the point is to report, whatever broke
            print(f"self-test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


def _run(model: str | None, folder: Path, timeout_s: float) -> int:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app.conversations import ConversationStore
    from app.paths import resources_dir
    from app.settings import Settings
    from engine.synthetic import get_shape, write_synthetic_model
    from ui.engine_worker import EngineThread
    from ui.main_window import MainWindow

    for needed in ("models.json", "icons/smallthinker.svg"):
        if not (resources_dir() / needed).is_file():
            raise FileNotFoundError(f"resource {needed} is missing from {resources_dir()}")
    path = Path(model) if model else write_synthetic_model(get_shape("tiny"), folder / "tiny.gguf")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    settings = Settings(context_length=1024, temperature=0.0, max_tokens=8)
    window = MainWindow(ConversationStore(folder / "data" / "c.sqlite3"), settings, EngineThread())
    window.show()

    def wait_for(signal, start) -> object:
        loop, got = QEventLoop(), []
        signal.connect(lambda value: (got.append(value), loop.quit()))
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        start()
        loop.exec()
        if not got:
            raise TimeoutError(f"nothing after {timeout_s:.0f} s")
        return got[0]

    try:
        started = time.perf_counter()
        loaded = wait_for(window.model_changed, lambda: window.load_model(str(path)))
        if loaded is None:
            raise RuntimeError(f"the model did not load: {window.model_label.text()}")
        load_s = time.perf_counter() - started
        done = wait_for(window.answer_finished, lambda: window.send("Hello! Who are you?"))
        if done is None or done.stats.tokens_out < 1:
            raise RuntimeError(f"no answer: {window.statusBar().currentMessage()}")
        print(
            f"self-test passed: {path.name} loaded in {load_s:.1f} s ({loaded.memory_mode}), "
            f"{done.stats.tokens_out} tokens at {done.stats.decode_tokens_per_second:.1f} tokens/s"
        )
        return 0
    finally:
        window.close()
        app.processEvents()
