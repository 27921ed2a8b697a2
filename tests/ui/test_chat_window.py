"""The chat window on the tiny model: streaming, stop, persistence."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt


def send_and_wait(qtbot, window, text):
    with qtbot.waitSignal(window.answer_finished, timeout=60_000) as done:
        window.input.setPlainText(text)
        qtbot.keyClick(window.input, Qt.Key.Key_Return)
    return done.args[0]


def test_sending_streams_an_answer_and_shows_the_speed(qtbot, open_window):
    window = open_window(max_tokens=40)
    streamed = []
    window.answer_streamed.connect(streamed.append)
    done = send_and_wait(qtbot, window, "Hello, who are you?")
    assert done.finish_reason == "length" and done.stats.tokens_out == 40
    assert streamed and "".join(streamed) == done.text
    blocks = window.chat_view.toPlainText().split("\n")
    # Each speaker's name stands on a line of its own with the message's actions, above the message.
    assert blocks[:3] == ["You    Copy · Edit", "Hello, who are you?", "SmallThinker    Copy · Regenerate"]
    assert blocks[3].strip() == done.text.strip()
    assert re.fullmatch(r"\d+(\.\d)? tokens/s", window.speed_label.text())
    assert "first token after" in window.speed_label.toolTip()  # the technical figures, a hover away
    assert re.fullmatch(r"context \d+%", window.context_label.text())
    assert window.input.toPlainText() == ""  # Enter sent it
    assert not window.busy and window.send_button.text() == "Send"


def test_shift_enter_adds_a_line_instead_of_sending(qtbot, open_window):
    window = open_window()
    window.input.setPlainText("first line")
    qtbot.keyClick(window.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert not window.busy and window.input.toPlainText().count("\n") == 1


def test_stop_mid_answer_keeps_the_partial_answer(qtbot, open_window):
    window = open_window(max_tokens=30000, context_length=32768)
    window.answer_streamed.connect(lambda _text: window.stop())  # stop at the first update
    with qtbot.waitSignal(window.answer_finished, timeout=60_000) as done:
        window.send("Write a very long story")
    answer = done.args[0]
    assert answer.finish_reason == "cancelled"
    assert 0 < answer.stats.tokens_out < 30000
    saved = window.store.messages(window.conversation_id)
    assert [(m.role, m.complete) for m in saved] == [("user", True), ("assistant", False)]
    assert saved[1].content == answer.text


def test_conversations_are_there_after_closing_and_reopening(qtbot, open_window):
    window = open_window(max_tokens=8)
    send_and_wait(qtbot, window, "Remember the alpine lakes")
    send_and_wait(qtbot, window, "And the glaciers")
    window.new_chat()
    send_and_wait(qtbot, window, "Another topic entirely")
    window.close()
    reopened = open_window()
    titles = [reopened.conversation_list.item(i).text() for i in range(reopened.conversation_list.count())]
    assert titles == ["Another topic entirely", "Remember the alpine lakes"]
    reopened.conversation_list.setCurrentRow(1)
    shown = reopened.chat_view.toPlainText()
    assert "Remember the alpine lakes" in shown and "And the glaciers" in shown


def test_a_bad_model_file_is_refused_and_the_loaded_model_stays(qtbot, open_window, tmp_path):
    window = open_window()
    loaded = window.model_label.text()
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(100))
    with qtbot.waitSignal(window.problem_shown, timeout=30_000) as refused:
        window.load_model(str(bad))
    assert "broken.gguf" in refused.args[0] and refused.args[0].endswith("is still loaded.")
    assert window.model is not None and window.model_label.text() == loaded and window.pages.currentIndex() == 1
    with qtbot.waitSignal(window.engine.worker.answer_done, timeout=30_000):
        window.send("Still there?")


def test_a_bad_model_file_with_none_loaded_is_said_on_the_model_line(qtbot, isolated_app_folders, tmp_path):
    from app.conversations import ConversationStore
    from app.settings import Settings
    from ui.engine_worker import EngineThread
    from ui.main_window import MainWindow

    window = MainWindow(ConversationStore(isolated_app_folders["data"] / "c.sqlite3"), Settings(), EngineThread())
    qtbot.addWidget(window)
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(100))
    with qtbot.waitSignal(window.model_changed, timeout=30_000) as failed:
        window.load_model(str(bad))
    assert failed.args[0] is None
    assert "could not be loaded" in window.model_label.text() and "broken.gguf" in window.model_label.text()
    window.close()


def test_a_model_file_that_crashes_llama_cpp_cannot_take_the_window_down(qtbot, open_window, tmp_path, monkeypatch):
    import sys

    from engine import model_trial

    window = open_window()
    # A file that passes every check of ours but on which llama.cpp aborts: its trial load
    # (a child process) dies of SIGABRT the way an assertion in llama.cpp ends a process.
    suspicious = tmp_path / "passes-our-checks.gguf"
    suspicious.write_bytes(Path(window.model.path).read_bytes())
    monkeypatch.setattr(model_trial, "trial_command", lambda path: [sys.executable, "-c", "import os; os.abort()"])
    with qtbot.waitSignal(window.problem_shown, timeout=60_000) as refused:
        window.load_model(str(suspicious))
    assert "llama.cpp crashed reading passes-our-checks.gguf" in refused.args[0] and "SIGABRT" in refused.args[0]
    with qtbot.waitSignal(window.engine.worker.answer_done, timeout=30_000):
        window.send("Still there?")


def test_regenerate_keeps_the_earlier_answer_as_a_version_with_arrows(qtbot, open_window):
    window = open_window(max_tokens=8, temperature=0.8)
    first = send_and_wait(qtbot, window, "Tell me about rivers")
    with qtbot.waitSignal(window.answer_finished, timeout=60_000):
        qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    saved = window.store.messages(window.conversation_id)
    assert [m.role for m in saved] == ["user", "assistant"]  # one answer shown, not two
    view = window.chat_view
    question = saved[0].id
    assert view.actions_of(1) == ["copy:1", f"regenerate:{saved[1].id}", f"version:{question}:1"]  # ‹ 2/2
    assert "2/2" in view.toPlainText()
    view.run_action(f"version:{question}:1")  # the left arrow
    assert window.session.last_answer(window.conversation_id) == first.text
    assert "1/2" in view.toPlainText() and view.actions_of(1)[-1] == f"version:{question}:2"


def test_every_message_has_copy_and_its_own_action(qtbot, open_window):
    from PySide6.QtWidgets import QApplication

    window = open_window(max_tokens=8)
    answer = send_and_wait(qtbot, window, "Tell me about rivers")
    question, reply = window.store.messages(window.conversation_id)
    view = window.chat_view
    assert view.actions_of(0) == ["copy:0", f"edit:{question.id}"]
    assert view.actions_of(1) == ["copy:1", f"regenerate:{reply.id}"]  # drawn as the answer ended
    view.run_action("copy:0")
    assert QApplication.clipboard().text() == "Tell me about rivers"
    view.run_action("copy:1")
    assert QApplication.clipboard().text() == answer.text


def test_edit_in_place_says_so_can_be_cancelled_and_branches_the_conversation(qtbot, open_window):
    window = open_window(max_tokens=8)
    send_and_wait(qtbot, window, "Tell me about rivers")
    send_and_wait(qtbot, window, "And the sea?")
    first_question = window.store.messages(window.conversation_id)[0]
    window.chat_view.run_action(f"edit:{first_question.id}")
    assert window.input.toPlainText() == "Tell me about rivers" and window.edit_banner.isVisible()
    assert window.input.hasFocus()
    qtbot.keyClick(window.input, Qt.Key.Key_Escape)  # Cancel: nothing changes
    assert not window.edit_banner.isVisible() and window.input.toPlainText() == "" and window.editing is None
    assert len(window.store.messages(window.conversation_id)) == 4
    window.start_edit(first_question.id)
    send_and_wait(qtbot, window, "Tell me about lakes")
    saved = window.store.messages(window.conversation_id)
    assert [m.content for m in saved][0] == "Tell me about lakes" and len(saved) == 2  # a new branch
    assert window.store.versions(window.conversation_id)[0].total == 2
    window.show_version(0, 1)  # back to the first branch, its whole conversation
    assert [m.content for m in window.store.messages(window.conversation_id)][::2] == [
        "Tell me about rivers",
        "And the sea?",
    ]


def test_versions_survive_a_restart(qtbot, open_window):
    window = open_window(max_tokens=8)
    send_and_wait(qtbot, window, "Tell me about rivers")
    with qtbot.waitSignal(window.answer_finished, timeout=60_000):
        window.regenerate()
    conversation = window.conversation_id
    window.close()
    again = open_window(max_tokens=8)
    again.show_conversation(conversation)
    question = again.store.messages(conversation)[0].id
    assert again.chat_view.actions_of(1)[-1] == f"version:{question}:1" and "2/2" in again.chat_view.toPlainText()


def test_copy_export_rename_search_and_delete(qtbot, open_window, tmp_path):
    from PySide6.QtWidgets import QApplication

    window = open_window(max_tokens=8)
    answer = send_and_wait(qtbot, window, "Mountains of Norway")
    window.copy_last_answer()
    assert QApplication.clipboard().text() == answer.text
    window.export_markdown(str(tmp_path / "chat.md"))
    exported = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert exported.startswith("# Mountains of Norway") and answer.text.strip() in exported
    window.rename_conversation("Norway trip")
    window.new_chat()
    send_and_wait(qtbot, window, "Something else")
    qtbot.keyClicks(window.search_box, "norway")
    assert [window.conversation_list.item(i).text() for i in range(window.conversation_list.count())] == ["Norway trip"]
    window.search_box.clear()
    window.conversation_list.setCurrentRow(1)
    window.delete_conversation()
    titles = [window.conversation_list.item(i).text() for i in range(window.conversation_list.count())]
    assert titles == ["Something else"]


def test_streamed_markdown_is_rendered_and_plain_prose_left_as_it_is(qtbot):
    from ui.chat_view import ChatView

    view = ChatView()
    qtbot.addWidget(view)
    view.begin_answer()
    for piece in ["Some **bold", "** words.\n", "\nPlain ", "prose here.\n\n", "- item one\n", "- item two"]:
        view.append_answer(piece)
    view.end_answer()
    assert view.answer_text == "Some **bold** words.\n\nPlain prose here.\n\n- item one\n- item two"
    shown = view.toPlainText()
    assert "Some bold words." in shown and "**" not in shown  # rendered: the markers are gone
    assert "Plain prose here." in shown
    assert "item one" in shown and "- item one" not in shown  # a rendered list, not literal dashes


def test_loading_shows_progress(qtbot, open_window, tiny_model_path):
    window = open_window()
    percents = []
    window.engine.worker.load_progress.connect(percents.append)
    with qtbot.waitSignal(window.model_changed, timeout=30_000):
        window.load_model(str(tiny_model_path))
    assert percents and percents[-1] == 100 and percents == sorted(percents)


def test_the_status_bar_shows_the_budget_and_the_expert_cache_when_experts_are_managed(
    qtbot, open_window, small_moe_model_path
):
    from engine.config import EngineConfig, MemoryMode
    from engine.experts.manager import fixed_bytes
    from engine.model_info import inspect_model

    window = open_window(max_tokens=16)
    info = inspect_model(small_moe_model_path)
    budget = fixed_bytes(info) + (info.file_size - fixed_bytes(info)) // 3
    config = EngineConfig(n_ctx=1024, memory_mode=MemoryMode.FILE_BACKED, expert_budget_bytes=budget)
    with qtbot.waitSignal(window.model_changed, timeout=30_000):
        window.engine.request_load.emit(str(small_moe_model_path), config)
    send_and_wait(qtbot, window, "Hello there")
    window._show_memory()
    label = window.memory_label.text()
    assert re.fullmatch(rf"memory \d\.\d\d of {budget / 2**30:.2f} GiB", label), label
    assert re.search(r"Experts found in memory when needed: \d+%", window.memory_label.toolTip())
