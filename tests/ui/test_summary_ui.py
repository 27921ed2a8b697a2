"""Summarising a document from the window, on the tiny model: progress, the result, stop, drop."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QTextBrowser

from tests.app.document_files import page_text, write_pdf


def summarise(qtbot, window, path):
    progress = []
    window.summary_progressed.connect(progress.append)
    with qtbot.waitSignal(window.summary_finished, timeout=120_000) as done:
        window.summarise_document(str(path))
    return done.args[0], progress


def test_a_document_becomes_a_conversation_titled_after_it(qtbot, open_window, tmp_path):
    window = open_window(max_tokens=64, context_length=1024)
    pdf = write_pdf(tmp_path / "minutes.pdf", [page_text(p, 8) for p in range(1, 8)])
    result, progress = summarise(qtbot, window, pdf)
    assert result is not None and not result.cancelled and result.sections >= 2
    assert [p.stage for p in progress[:2]] == ["preparing", "section"] and progress[-1].stage == "final"
    assert window.conversation_list.currentItem().text() == "Summary: minutes.pdf"
    shown = window.chat_view.toPlainText()
    assert "Summarise «minutes.pdf» (PDF, 7 pages)." in shown
    assert "Summary ready" in window.statusBar().currentMessage()
    dialog = window.show_part_summaries()
    assert dialog is not None and "page 1" in dialog.findChild(QTextBrowser).toPlainText()
    dialog.close()
    assert not window.busy


def test_stop_keeps_the_finished_sections(qtbot, open_window, tmp_path):
    window = open_window(max_tokens=64, context_length=1024)
    pdf = write_pdf(tmp_path / "long.pdf", [page_text(p, 8) for p in range(1, 12)])
    window.summary_progressed.connect(lambda p: p.index == 2 and window.stop())
    result, _ = summarise(qtbot, window, pdf)
    assert result.cancelled and [p.complete for p in result.parts] == [True, False]
    messages = window.store.messages(window.conversation_id)
    assert not messages[-1].complete and "Stopped before the end: 1 part summaries" in messages[-1].content


def test_a_bad_document_is_reported_and_a_dropped_one_summarised(qtbot, open_window, tmp_path):
    window = open_window(max_tokens=32, context_length=1024)
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    result, _ = summarise(qtbot, window, empty)
    assert result is None and "empty.md is empty" in window.statusBar().currentMessage()
    note = tmp_path / "note.txt"
    note.write_text("The pumps need new motors before winter.\n" * 5, encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(note))])
    drop = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(window.summary_finished, timeout=120_000) as done:
        window.dropEvent(drop)
    assert done.args[0] is not None and done.args[0].document.title == "note.txt"


def test_the_summary_shows_a_card_in_the_main_area_while_it_runs(qtbot, open_window, tmp_path):
    window = open_window(max_tokens=32, context_length=1024)
    with qtbot.waitSignal(window.answer_finished, timeout=60_000):
        window.send("An unrelated chat")
    pdf = write_pdf(tmp_path / "report.pdf", [page_text(p, 8) for p in range(1, 6)])
    seen = []

    def look(progress):
        card = window.summary_card
        seen.append((card.isVisible(), card.title.text(), card.stage.text(), window.chat_view.toPlainText()))

    window.summary_progressed.connect(look)
    result, _ = summarise(qtbot, window, pdf)
    assert result is not None and seen
    visible, title, stage, shown = seen[1]
    assert visible and title == "Summarising report.pdf" and stage.startswith("Section 1 of")
    assert "An unrelated chat" not in shown  # the main area is the document's, not the old chat
    assert not window.summary_card.isVisible()  # the result replaced it
    assert window.conversation_list.currentItem().text() == "Summary: report.pdf"


def test_the_time_left_counts_down_between_parts(qtbot):
    from app.summarizer import SummaryProgress
    from ui.summary_card import SummaryCard

    card = SummaryCard()
    qtbot.addWidget(card)
    card.start("a.pdf")
    card.update_progress(SummaryProgress("section", 2, 5, 0, 90.4))
    assert card.eta.text() == "About 1 min 30 s left" and (card.bar.value(), card.bar.maximum()) == (1, 5)
    card._deadline -= 10  # ten seconds on, no new estimate yet
    card._show_time_left()
    assert card.eta.text() == "About 1 min 20 s left"
    card.update_progress(SummaryProgress("final", 1, 1, 0, None))
    assert card.bar.maximum() == 0 and card.stage.text() == "Writing the final summary"
