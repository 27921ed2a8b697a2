"""Take the README's screenshot of the main window: `make screenshot` runs this under Xvfb.

The conversation is seeded example text (the synthetic test model writes gibberish);
the last answer is streamed live by the tiny synthetic model, so the status bar shows
real figures.

    python docs/screenshot.py OUT.png [--theme system|light|dark] [--safe-mode]

`--safe-mode` shows what a user sees where llama.cpp's fast kernels crash: a real crashing
probe child is recorded first (as on an AMX CPU with a native build), and the Settings
dialog is saved too, as OUT-settings.png.

`--scale 2` lays the window out at Qt scale factor 2 (a HiDPI screen); `--dialogs` also saves
File > Models… (OUT-models.png). `--memory` runs a synthetic model of the 4B's real shape
within a 1.5 GiB budget instead of the tiny one, and saves the live memory panel after an
answer (OUT-live-panel.png) and Settings > Memory with the speed prediction made on this
machine (OUT-memory-page.png).
"""

from __future__ import annotations

import dataclasses
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


SEGFAULT = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]


def record_fast_kernels_crashing() -> None:
    from app.paths import data_dir
    from engine.config import Kernels
    from engine.kernel_check import kernel_verdict, probe_command

    kernel_verdict(data_dir(), command=lambda k: SEGFAULT if k is Kernels.FAST else probe_command(k))


def _grab_dialogs(app, window, out: Path) -> bool:
    """Settings (every tab: the KV cache costs, the processor note, the server) and the dialog
    shown when the conversation database cannot be opened, next to `out`."""
    from ui.settings_dialog import SettingsDialog
    from ui.store_recovery import StoreRecovery

    ok = True
    dialogs = {
        "settings": SettingsDialog(
            window.settings,
            window.catalog,
            total_ram_bytes=16 << 30,
            token=None,
            kernel_note=window.model.kernel_note,
            parent=window,
        ),  # fmt: skip
        "store-recovery": StoreRecovery(
            Path("~/.local/share/SmallThinker/conversations.sqlite3").expanduser(),
            "cannot open the conversation database .../conversations.sqlite3: file is not a database",
            parent=window,
        ),
    }
    settings = dialogs["settings"]
    for name, dialog in dialogs.items():
        dialog.show()
        app.processEvents()
        ok = dialog.grab().save(str(out.with_name(f"{out.stem}-{name}.png"))) and ok
        if dialog is settings:  # its other tabs too
            for index in range(1, settings.tabs.count()):
                settings.tabs.setCurrentIndex(index)
                app.processEvents()
                tab = settings.tabs.tabText(index).lower().replace(" ", "-")
                ok = dialog.grab().save(str(out.with_name(f"{out.stem}-{name}-{tab}.png"))) and ok
        dialog.close()
    return ok


def _wait_for(signal, timeout_ms: int = 60_000) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    signal.connect(loop.quit)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()


def _pause(ms: int) -> None:
    """A loop of our own: QApplication.quit() would close the window (Qt 6), stopping its
    engine and server before the pictures."""
    from PySide6.QtCore import QEventLoop, QTimer

    pause = QEventLoop()
    QTimer.singleShot(ms, pause.quit)
    pause.exec()


def _grab_memory(app, window, out: Path) -> bool:
    """The live panel over an answer within the budget, then Settings > Memory."""
    from ui.settings_dialog import SettingsDialog

    panel = window.show_live_panel()
    panel.move(window.geometry().topLeft())
    window.send("Tell me about the history of tea, from its origins to today.")
    _wait_for(window.answer_finished, 300_000)
    _pause(1500)  # the last sample
    ok = panel.grab().save(str(out.with_name(f"{out.stem}-live-panel.png")))
    panel.hide()
    dialog = SettingsDialog(
        window.settings, window.catalog, total_ram_bytes=window.first_run.probe.total_ram_bytes, token=None,
        parent=window,
    )  # fmt: skip
    window.speed.plan_ready.connect(dialog.memory.set_plan)
    window.speed.refresh()  # measures the disk first (this machine's, as a user's first time)
    dialog.tabs.setCurrentWidget(dialog.memory)
    dialog.resize(900, 760)
    dialog.show()
    _wait_for(window.speed.plan_ready, 120_000)
    app.processEvents()
    ok = dialog.memory.plan is not None and dialog.grab().save(str(out.with_name(f"{out.stem}-memory-page.png"))) and ok
    dialog.close()
    return ok


def _grab_model_manager(app, window, out: Path) -> bool:
    """File > Models… with the model loaded and the catalog's models not downloaded."""
    manager = window.open_model_manager()
    manager.move(window.geometry().topLeft())
    app.processEvents()
    ok = manager.grab().save(str(out.with_name(f"{out.stem}-models.png")))
    manager.close()
    return ok


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_answering(app, window) -> bool:
    """A client streaming a long answer from the window's local server, caught mid-answer."""
    import threading
    import time

    import openai
    from PySide6.QtCore import QEvent

    client = openai.OpenAI(base_url=window.server.base_url, api_key="none", max_retries=0)
    model = client.models.list().data[0].id
    question = [{"role": "user", "content": "Write a long story."}]

    def ask() -> None:
        try:
            for _ in client.chat.completions.create(model=model, messages=question, max_tokens=4000, stream=True):
                pass
        except openai.APIConnectionError:
            pass  # the window closed (and its server with it) after the picture

    threading.Thread(target=ask, daemon=True).start()
    deadline = time.monotonic() + 30
    while "answering" not in window.server.label.text() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.002)
    # Lay the longer label out, but deliver no queued signal (the answer may end any moment).
    app.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    return "answering" in window.server.label.text()


def _grab_summary_card(window, folder: Path, out: Path) -> bool:
    """The window while a document is summarised: the card, caught at its second section."""
    from PySide6.QtCore import QEventLoop, QTimer

    document = folder / "quarterly-report.md"
    part = "The committee reviewed the budget for repairs. " * 60
    document.write_text("".join(f"# Part {n}\n\n{part}\n\n" for n in range(6)), encoding="utf-8")
    grabbed = []

    def look(progress) -> None:
        if progress.stage == "section" and progress.index == 2 and not grabbed:
            grabbed.append(window.grab().save(str(out.with_name(f"{out.stem}-summary.png"))))

    window.summary_progressed.connect(look)
    loop = QEventLoop()
    window.summary_finished.connect(loop.quit)
    QTimer.singleShot(120_000, loop.quit)
    window.summarise_document(str(document))
    loop.exec()
    return bool(grabbed and grabbed[0])


def main(
    out: Path,
    theme: str = "system",
    safe_mode: bool = False,
    dialogs: bool = False,
    server: bool = False,
    memory: bool = False,
    scale: float = 1.0,
) -> int:
    if scale != 1.0:  # before the QApplication: the window then lays out at this scale factor
        os.environ["QT_SCALE_FACTOR"] = f"{scale:g}"
    with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
        os.environ["SMALLTHINKER_DATA_DIR"] = str(Path(tmp) / "data")
        os.environ["SMALLTHINKER_CONFIG_DIR"] = str(Path(tmp) / "config")
        from PySide6.QtWidgets import QApplication

        from app.conversations import ConversationStore
        from app.settings import Settings
        from engine.synthetic import RouterSkew, get_shape, write_synthetic_model
        from ui.appearance import apply_appearance
        from ui.engine_worker import EngineThread
        from ui.main_window import MainWindow

        app = QApplication(sys.argv[:1])
        settings = Settings(max_tokens=60, temperature=0.0, theme=theme)
        if memory:  # the 4B's shape within a budget: the expert manager at work
            settings = dataclasses.replace(settings, memory_budget_gib=1.5, max_tokens=150, temperature=0.6)
        if server:
            settings = dataclasses.replace(settings, server_enabled=True, server_port=_free_port())
        apply_appearance(settings)
        if safe_mode:
            record_fast_kernels_crashing()
        if memory:
            model = write_synthetic_model(
                get_shape("4b"), Path(tmp) / "SmallThinker-4B-synthetic.gguf", skew=RouterSkew()
            )
        else:
            model = write_synthetic_model(get_shape("tiny"), Path(tmp) / "SmallThinker-tiny-synthetic.gguf")
        store = ConversationStore()
        for title in ("Planning a trip to the Alps", "Summary: quarterly report.pdf"):
            chat = store.create(title)
            store.add_message(chat.id, "user", f"({title})")
        chat = store.create("How to brew tea")
        store.add_message(chat.id, "user", "How do I make a good cup of tea?")
        store.add_message(chat.id, "assistant", EXAMPLE_ANSWER)
        window = MainWindow(store, settings, EngineThread())
        window.resize(1180, 760)
        window.show()

        window.load_model(str(model))
        _wait_for(window.model_changed)
        window.refresh_conversations()
        window.conversation_list.setCurrentRow(0)
        window.send("And green tea?")
        _wait_for(window.answer_finished, 300_000)
        _pause(700)  # the memory indicator ticks once
        out.parent.mkdir(parents=True, exist_ok=True)
        ok = _server_answering(app, window) if server else True
        ok = window.grab().save(str(out)) and ok
        if dialogs:
            ok = _grab_dialogs(app, window, out) and ok
            ok = _grab_summary_card(window, Path(tmp), out) and ok
        if memory:
            ok = _grab_memory(app, window, out) and ok
        if dialogs:
            ok = _grab_model_manager(app, window, out) and ok
        window.close()
        print(f"saved {out}" if ok else f"could not save {out}")
        return 0 if ok else 1


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/main-window.png"))
    parser.add_argument("--theme", choices=["system", "light", "dark"], default="system")
    parser.add_argument("--safe-mode", action="store_true")
    parser.add_argument("--dialogs", action="store_true", help="also the settings and database-recovery dialogs")
    parser.add_argument("--server", action="store_true", help="the local server on, caught answering a client")
    parser.add_argument("--memory", action="store_true", help="the 4B's shape in a budget: live panel, Memory page")
    parser.add_argument("--scale", type=float, default=1.0, help="Qt's scale factor (2: a HiDPI screen)")
    args = parser.parse_args()
    dialogs = args.dialogs or args.safe_mode
    sys.exit(main(args.out, args.theme, args.safe_mode, dialogs, args.server, args.memory, args.scale))
