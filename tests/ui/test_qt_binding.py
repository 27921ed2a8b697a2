"""Guards against a Qt binding bug the app cannot work around.

PySide6 6.12.0 dropped a reference to True on every signal emitted from a thread other
than the receiver's: the engine worker emits a few dozen a second, so after a few
thousand updates the interpreter aborted ("bool_dealloc"). pyproject.toml pins an
earlier release; this test fails if an upgrade brings the bug back.
"""

from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    text = Signal(str)


def test_cross_thread_signals_do_not_leak_references(qtbot):
    emitter, received = _Emitter(), []
    emitter.text.connect(received.append)
    before = sys.getrefcount(True)
    worker = threading.Thread(target=lambda: [emitter.text.emit("x") for _ in range(500)])
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: len(received) == 500)
    assert sys.getrefcount(True) - before > -50, "this PySide6 release leaks references on cross-thread signals"
