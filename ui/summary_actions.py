"""Summarising a document from the window: File > Summarise document…, or drop the file.

The worker runs the summary with the loaded model; a card above the emptied conversation
view shows the progress (ui/summary_card.py: "Section 3 of 12", a bar, the time left, Stop);
Stop cancels within the section and what was finished is kept. The result becomes a
conversation titled after the file, so the user can ask follow-up questions; its section
summaries are one menu entry away.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QDialog, QFileDialog, QTextBrowser, QVBoxLayout

from app.documents import SUFFIXES
from app.engine_settings import sampling_params
from app.summarizer import SummaryProgress, SummaryResult
from app.summary_job import part_summaries_markdown, save_summary

_FILTER = "Documents (" + " ".join(f"*{s}" for s in sorted(SUFFIXES)) + ")"


class SummaryActions:
    """Mixed into MainWindow, which provides store, engine, model, busy and the widgets."""

    def summarise_document(self, path: str) -> None:
        if self.busy:
            self.statusBar().showMessage("Wait for the answer to finish, or stop it first.", 5000)
            return
        if self.model is None:
            self.statusBar().showMessage("Load a model first (File > Open GGUF file…).", 5000)
            return
        # The main area is the document's from now on, not the chat that happened to be open.
        self.conversation_id = None
        self.conversation_list.setCurrentRow(-1)
        self.chat_view.show_messages([])
        self._show_figures(None)
        self.summary_card.start(Path(path).name)
        self._set_busy(True)
        self.engine.request_summarize.emit(path, sampling_params(self.settings))

    def _choose_document(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Summarise a document", "", _FILTER)
        if path:
            self.summarise_document(path)

    def _summary_progress(self, progress: SummaryProgress) -> None:
        self.summary_card.update_progress(progress)
        self.summary_progressed.emit(progress)

    def _summary_done(self, result: SummaryResult) -> None:
        self.summary_card.finish()
        self._set_busy(False)
        conversation = save_summary(self.store, result)
        self.conversation_id = conversation.id
        self.refresh_conversations()
        self.show_conversation(conversation.id)
        done = "Stopped; the finished parts are kept" if result.cancelled else "Summary ready"
        # Short: the status bar's right side holds the live figures (a longer one was cut off).
        self.statusBar().showMessage(f"{done} ({result.sections} sections): Conversation > Section summaries", 10000)
        self.summary_finished.emit(result)

    def _summary_failed(self, message: str) -> None:
        self.summary_card.finish()
        self._set_busy(False)
        self.show_problem("Summary failed", message)
        self.summary_finished.emit(None)

    def show_part_summaries(self) -> QDialog | None:
        text = part_summaries_markdown(self.store, self.conversation_id) if self.conversation_id else ""
        if not text:
            self.statusBar().showMessage("This conversation is not a document summary.", 5000)
            return None
        dialog = QDialog(self)
        dialog.setWindowTitle("Section summaries")
        view = QTextBrowser()
        view.setMarkdown(text)
        QVBoxLayout(dialog).addWidget(view)
        dialog.resize(700, 600)
        dialog.show()
        return dialog

    # --- drag and drop: a document is summarised, a GGUF file loaded ---------------------------------
    def _dropped_file(self, event) -> Path | None:
        for url in event.mimeData().urls():
            path = Path(url.toLocalFile())
            if url.isLocalFile() and (path.suffix.lower() in SUFFIXES or path.suffix.lower() == ".gguf"):
                return path
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if self._dropped_file(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        path = self._dropped_file(event)
        if path is None:
            return
        event.acceptProposedAction()
        if path.suffix.lower() == ".gguf":
            self.load_model(str(path))
        else:
            self.summarise_document(str(path))
