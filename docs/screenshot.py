"""Take the README's screenshot of the main window: `make screenshot` runs this under Xvfb.

The conversation is seeded example text (the synthetic test model writes gibberish);
the last answer is streamed live by the tiny synthetic model, so the status bar shows
real figures.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EXAMPLE_ANSWER = """Here is a simple way to brew a good cup of black tea:

1. **Heat fresh water** to just off the boil (about 95 °C).
2. **Warm the pot**, then add one teaspoon of leaves per cup.
3. **Steep** for 3 to 4 minutes, then strain.

A quick timer in Python:

```python
import time
time.sleep(4 * 60)
print("Tea is ready")
```

*Tip:* milk goes in after the tea, so you can judge the colour."""


def main(out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
        os.environ["SMALLTHINKER_DATA_DIR"] = str(Path(tmp) / "data")
        os.environ["SMALLTHINKER_CONFIG_DIR"] = str(Path(tmp) / "config")
        from PySide6.QtCore import QEventLoop, QTimer
        from PySide6.QtWidgets import QApplication

        from app.conversations import ConversationStore
        from app.settings import Settings
        from engine.synthetic import get_shape, write_synthetic_model
        from ui.engine_worker import EngineThread
        from ui.main_window import MainWindow

        app = QApplication(sys.argv[:1])
        model = write_synthetic_model(get_shape("tiny"), Path(tmp) / "SmallThinker-tiny-synthetic.gguf")
        store = ConversationStore()
        for title in ("Planning a trip to the Alps", "Summary: quarterly report.pdf"):
            chat = store.create(title)
            store.add_message(chat.id, "user", f"({title})")
        chat = store.create("How to brew tea")
        store.add_message(chat.id, "user", "How do I make a good cup of tea?")
        store.add_message(chat.id, "assistant", EXAMPLE_ANSWER)
        window = MainWindow(store, Settings(max_tokens=60, temperature=0.0), EngineThread())
        window.resize(1180, 760)
        window.show()

        def wait_for(signal, timeout_ms: int = 60_000) -> None:
            loop = QEventLoop()
            signal.connect(loop.quit)
            QTimer.singleShot(timeout_ms, loop.quit)
            loop.exec()

        window.load_model(str(model))
        wait_for(window.model_changed)
        window.refresh_conversations()
        window.conversation_list.setCurrentRow(0)
        window.send("And green tea?")
        wait_for(window.answer_finished)
        QTimer.singleShot(700, app.quit)  # let the memory indicator tick once
        app.exec()
        out.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(out))
        window.close()
        print(f"saved {out}" if ok else f"could not save {out}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/main-window.png")))
