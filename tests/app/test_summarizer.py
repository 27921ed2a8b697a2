"""Map-reduce summaries with the tiny synthetic model at a small context (text is gibberish)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.conversations import ConversationStore
from app.documents import read_document
from app.summarizer import Summarizer
from app.summary_job import part_summaries_markdown, save_summary
from engine.config import EngineConfig, SamplingParams
from engine.engine import Engine
from tests.app.document_files import page_text, write_docx, write_pdf

ROOT = Path(__file__).resolve().parents[2]
# Sampled, not greedy: the random model's greedy answers stop or loop early, and summaries
# must be long enough for the combining levels to be needed. Seeded: reproducible.
SAMPLING = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=3)


@pytest.fixture(scope="module")
def small_context_engine(tiny_model_path):
    with Engine(tiny_model_path, EngineConfig(n_ctx=768)) as engine:
        yield engine


def summarizer(engine) -> Summarizer:
    return Summarizer(engine, sampling=SAMPLING, max_summary_tokens=64)


def test_a_short_document_is_summarised_in_one_pass(small_context_engine, tmp_path):
    document = read_document(write_docx(tmp_path / "note.docx", {"Note": ["The pumps need new motors."]}))
    events = []
    result = summarizer(small_context_engine).summarize(document, events.append)
    assert [e.stage for e in events] == ["preparing", "whole"]
    assert not result.cancelled and result.final and result.levels == 0


def test_a_long_pdf_needs_sections_and_combining_levels_with_progress_in_order(small_context_engine, tmp_path):
    document = read_document(write_pdf(tmp_path / "long.pdf", [page_text(p, 8) for p in range(1, 11)]))
    s = summarizer(small_context_engine)
    assert s.tokens(document.text) > 3 * s.chunk_tokens
    events = []
    result = s.summarize(document, events.append)
    assert not result.cancelled and result.final
    assert result.sections >= 3 and result.levels >= 1
    assert events[0].stage == "preparing"  # said at once, before the text is counted
    events = events[1:]
    stages = [e.stage for e in events]
    n_sections = stages.count("section")
    assert stages == ["section"] * n_sections + ["combine"] * stages.count("combine") + ["final"]
    assert [e.index for e in events[:n_sections]] == list(range(1, n_sections + 1))
    assert all(e.total == n_sections for e in events[:n_sections])
    combine = [(e.level, e.index) for e in events if e.stage == "combine"]
    assert combine == sorted(combine) and combine[0] == (1, 1)
    assert events[0].eta_seconds is None and all(e.eta_seconds is not None for e in events[1:])
    labels = [p.label for p in result.parts if p.level == 0]
    assert labels[0].startswith("page 1") and labels[-1].endswith("page 10")
    assert all(s.tokens(s.clip(p.summary)) <= 64 for p in result.parts)


def test_cancel_stops_within_a_section_and_keeps_what_was_done(small_context_engine, tmp_path):
    document = read_document(write_pdf(tmp_path / "long.pdf", [page_text(p, 8) for p in range(1, 11)]))
    cancel = threading.Event()
    events = []

    def on_progress(event):
        if event.stage == "preparing":
            return
        events.append(event)
        if event.index == 3:
            cancel.set()  # while section 3 is starting: llama.cpp stops inside it

    result = summarizer(small_context_engine).summarize(document, on_progress, cancel)
    assert result.cancelled and result.final == ""
    assert [e.index for e in events] == [1, 2, 3]  # nothing started after the cancel
    assert [p.complete for p in result.parts] == [True, True, False]
    store = ConversationStore(tmp_path / "c.sqlite3")
    conversation = save_summary(store, result)
    messages = store.messages(conversation.id)
    assert conversation.title == "Summary: long.pdf"
    assert [m.role for m in messages] == ["user", "assistant"] and not messages[1].complete
    assert "Stopped before the end: 2 part summaries" in messages[1].content
    assert "(interrupted)" in part_summaries_markdown(store, conversation.id)


def test_the_result_is_a_conversation_with_its_part_summaries(small_context_engine, tmp_path):
    document = read_document(write_pdf(tmp_path / "report.pdf", [page_text(p, 8) for p in range(1, 10)]))
    result = summarizer(small_context_engine).summarize(document)
    store = ConversationStore(tmp_path / "c.sqlite3")
    conversation = save_summary(store, result)
    messages = store.messages(conversation.id)
    assert messages[0].content == "Summarise «report.pdf» (PDF, 9 pages)."
    assert messages[1].content == result.final and messages[1].complete
    parts = store.part_summaries(conversation.id)
    assert [p.label for p in parts] == [p.label for p in result.parts]


class CountingEngine:
    """The engine, counting the characters it was asked to tokenize."""

    def __init__(self, engine) -> None:
        self.engine, self.chars_tokenized = engine, 0

    def tokenize(self, text: str) -> list[int]:
        self.chars_tokenized += len(text)
        return self.engine.tokenize(text)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def _one_long_section(tmp_path, n_chars: int):
    """A text file without headings or line breaks: one section (issue 17, item 6)."""
    words = [f"{w}{i % 97}" for i, w in enumerate(["pumps", "motors", "budget", "pipes", "winter"] * (n_chars // 30))]
    path = tmp_path / "long.txt"
    path.write_text(" ".join(words)[:n_chars] + ".", encoding="utf-8")
    document = read_document(path)
    assert len(document.sections) == 1
    return document


def test_splitting_a_long_section_tokenizes_each_character_a_few_times_not_once_per_cut(small_context_engine, tmp_path):
    document = _one_long_section(tmp_path, 200_000)
    engine = CountingEngine(small_context_engine)
    s = Summarizer(engine, sampling=SAMPLING, max_summary_tokens=64)
    engine.chars_tokenized = 0
    chunks = s.pack(document.sections)
    assert len(chunks) > 50 and all(s.tokens(c.text) <= s.chunk_tokens for c in chunks)
    assert " ".join(c.text for c in chunks).split() == document.text.split()  # every word, once, in order
    # it re-counted all that remained at every cut: about 100x the text here
    assert engine.chars_tokenized < 5 * len(document.text)


def test_stop_is_seen_while_a_long_text_is_still_being_read(small_context_engine, tmp_path):
    document = _one_long_section(tmp_path, 3_000_000)
    engine = CountingEngine(small_context_engine)
    s = Summarizer(engine, sampling=SAMPLING, max_summary_tokens=64)
    cancel = threading.Event()
    events = []

    def on_progress(event):
        events.append(event.describe())
        cancel.set()  # at the first report, which comes before any counting

    engine.chars_tokenized = 0
    result = s.summarize(document, on_progress, cancel)
    assert result.cancelled and not result.parts
    assert events == ["Reading the document into sections"]
    assert engine.chars_tokenized < 200_000  # stopped after one piece, not after 3 MB


def _cli(*args: str, env_dirs: dict) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, SMALLTHINKER_DATA_DIR=str(env_dirs["data"]), SMALLTHINKER_CONFIG_DIR=str(env_dirs["config"]))
    return subprocess.run(
        [sys.executable, "-m", "ui", "summarize", *args], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )


def test_the_cli_writes_the_summary_and_refuses_bad_input(tiny_model_path, tmp_path, isolated_app_folders):
    pdf = write_pdf(tmp_path / "long.pdf", [page_text(p, 8) for p in range(1, 11)])
    out = tmp_path / "summary.md"
    done = _cli(
        str(pdf), "--model", str(tiny_model_path), "--context", "768", "--out", str(out), env_dirs=isolated_app_folders
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Summary of long.pdf") and "## Section summaries" in text
    assert "Section 1 of" in done.stderr and "Writing the final summary" in done.stderr
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    refused = _cli(str(empty), "--model", str(tiny_model_path), env_dirs=isolated_app_folders)
    assert refused.returncode != 0 and "empty.txt is empty" in refused.stderr
    no_model = _cli(str(pdf), env_dirs=isolated_app_folders)
    assert no_model.returncode != 0 and "no model" in no_model.stderr


def test_a_file_name_that_is_not_utf8_is_summarised_under_a_readable_title(
    tiny_model_path, tmp_path, isolated_app_folders
):
    # issue 17, item 8: UnicodeEncodeError traceback
    import os

    path = tmp_path / os.fsdecode(b"r\xe9union.txt")  # Latin-1 bytes in a Linux file name
    path.write_text("Le conseil a vote le budget.\n" * 20, encoding="utf-8")
    out = tmp_path / "summary.md"
    done = _cli(
        str(path), "--model", str(tiny_model_path), "--context", "768", "--out", str(out), env_dirs=isolated_app_folders
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert out.read_text(encoding="utf-8").startswith("# Summary of r\ufffdunion.txt")
