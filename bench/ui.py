"""How smooth the chat stays: a 2,000-token answer streamed into a 300-message conversation.

The GUI thread runs a 5 ms precise timer; the longest gap between its ticks is the
longest stall a person could notice. Frames per second are the chat view's paint
events while the answer streams. The tiny synthetic model generates far faster than
a real one, so each update carries more text than it would in real use: the render
work per update at a given answer length is the real one, the number of updates is
smaller. Also measured: opening the 300-message conversation.

    python bench/ui.py [--messages 300] [--tokens 2000]   (offscreen unless a display is set)

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

TARGET_STALL_MS = 50
_PARAGRAPH = (
    "Here is what I found about **{topic}**:\n\n"
    "- the first point, with some *emphasis* and a `code span`;\n"
    "- a second point that runs a little longer, to wrap across the width of the view;\n\n"
    "```python\nresult = compute({n})\nprint(result)\n```\n"
)


def seed_conversation(store, n_messages: int) -> int:
    chat = store.create("A long conversation")
    for i in range(n_messages // 2):
        store.add_message(chat.id, "user", f"Question {i}: tell me about topic {i}?")
        store.add_message(chat.id, "assistant", _PARAGRAPH.format(topic=f"topic {i}", n=i))
    return chat.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        os.environ["SMALLTHINKER_DATA_DIR"] = str(Path(tmp) / "data")
        os.environ["SMALLTHINKER_CONFIG_DIR"] = str(Path(tmp) / "config")
        figures = run(Path(tmp), args.messages, args.tokens)
    print(
        f"{args.messages} messages, {figures['tokens']} tokens streamed in {figures['stream_s']:.1f} s "
        f"({figures['updates']} updates): longest stall {figures['max_stall_ms']:.1f} ms "
        f"(target < {TARGET_STALL_MS}), {figures['fps']:.1f} frames/s; "
        f"opening the conversation {figures['open_ms']:.0f} ms"
    )
    print(json.dumps(figures))


def run(tmp: Path, n_messages: int, n_tokens: int) -> dict:
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.conversations import ConversationStore
    from app.settings import Settings
    from engine.synthetic import get_shape, write_synthetic_model
    from ui.engine_worker import EngineThread
    from ui.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    model = write_synthetic_model(get_shape("tiny"), tmp / "tiny.gguf")
    store = ConversationStore()
    conversation = seed_conversation(store, n_messages)
    settings = Settings(max_tokens=n_tokens, temperature=0.0, context_length=16384)
    window = MainWindow(store, settings, EngineThread())
    window.resize(1100, 760)
    window.show()
    wait(app, window.model_changed, lambda: window.load_model(str(model)))

    opened = time.perf_counter()
    window.refresh_conversations()
    window.conversation_list.setCurrentRow(0)
    app.processEvents()
    open_ms = (time.perf_counter() - opened) * 1000
    assert window.conversation_id == conversation

    frames_before = window.chat_view.frames_painted
    clock, gaps, updates = QElapsedTimer(), [], []
    ticker = QTimer(interval=5, timerType=Qt.TimerType.PreciseTimer)
    ticker.timeout.connect(lambda: gaps.append(clock.restart()))
    window.answer_streamed.connect(updates.append)
    started = time.perf_counter()
    clock.start()
    ticker.start()
    done = wait(app, window.answer_finished, lambda: window.send("Now write something very long."))
    ticker.stop()
    stream_s = time.perf_counter() - started
    window.close()
    return {
        "messages": n_messages,
        "tokens": done.stats.tokens_out,
        "updates": len(updates),
        "stream_s": stream_s,
        "max_stall_ms": float(max(gaps)),
        "fps": (window.chat_view.frames_painted - frames_before) / stream_s,
        "open_ms": open_ms,
        "target_stall_ms": TARGET_STALL_MS,
    }


def wait(app, signal, action):
    """Run `action`, then the event loop until `signal` fires; return its argument."""
    from PySide6.QtCore import QEventLoop, QTimer

    got = []
    loop = QEventLoop()
    signal.connect(lambda value: (got.append(value), loop.quit()))
    action()
    QTimer.singleShot(300_000, loop.quit)
    loop.exec()
    if not got:
        raise SystemExit("timed out")
    return got[0]


if __name__ == "__main__":
    main()
