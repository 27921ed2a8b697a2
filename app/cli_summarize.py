"""`smallthinker summarize FILE`: a document's summary, headless, with a progress line."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from app.documents import read_document, supported_suffixes
from app.engine_settings import engine_config
from app.errors import AppError
from app.settings import load_settings
from app.summarizer import Summarizer, SummaryProgress, SummaryResult


def add_parser(sub) -> None:
    parser = sub.add_parser("summarize", help=f"summarise a document ({supported_suffixes()})")
    parser.add_argument("file", type=Path, help="the document")
    parser.add_argument("--out", type=Path, help="write the summary here (Markdown); default: print it")
    parser.add_argument("--model", type=Path, help="the model (default: the one the app last loaded)")
    parser.add_argument("--context", type=int, help="context length in tokens (default: the app's setting)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    model = args.model or (Path(settings.model_path) if settings.model_path else None)
    if model is None:
        raise AppError("no model to summarise with: pass --model FILE.gguf, or load one in the app first")
    document = read_document(args.file)  # refuse a bad document before loading a model
    from engine.engine import Engine  # heavy: only once the document is known to be good

    with Engine(model, engine_config(settings, context_length=args.context)) as engine:
        result = Summarizer(engine).summarize(document, progress=_show_progress, cancel=threading.Event())
    sys.stderr.write("\n")
    text = summary_markdown(result)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out} ({result.sections} sections, {result.levels} combining levels)")
    else:
        print(text)
    return 0


def summary_markdown(result: SummaryResult) -> str:
    lines = [f"# Summary of {result.document.title}", "", result.final, ""]
    sections = [p for p in result.parts if p.level == 0]
    if len(sections) > 1:
        lines += ["## Section summaries", ""]
        lines += [f"- **{p.label}**: {p.summary}" for p in sections]
    return "\n".join(lines).rstrip() + "\n"


def _show_progress(p: SummaryProgress) -> None:
    line = p.describe()
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{line:<80}")
    else:
        sys.stderr.write(f"{line}\n")
    sys.stderr.flush()
