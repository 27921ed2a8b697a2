"""The composition root: `smallthinker` with no subcommand opens the window.

Subcommands are handed to `app.cli` before Qt is imported, so headless use never
needs a display or loads Qt at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from app.cli import build_parser, configure_logging, run_command
from engine.kernel_check import FROZEN_FLAG
from engine.model_trial import FROZEN_FLAG as TRIAL_FLAG
from ui.display_check import display_problem


def launch_window(argv: Sequence[str]) -> int:
    problem = display_problem()
    if problem:
        print(f"smallthinker: {problem}", file=sys.stderr)
        return 2
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.paths import resources_dir
    from app.settings import load_settings
    from ui.appearance import apply_appearance
    from ui.engine_worker import EngineThread
    from ui.main_window import MainWindow
    from ui.store_recovery import open_store_or_ask

    app = QApplication([sys.argv[0], *argv])
    app.setApplicationName("SmallThinker Desktop")
    app.setWindowIcon(QIcon(str(resources_dir() / "icons" / "smallthinker.svg")))  # vector: sharp on high DPI
    problems: list[str] = []
    settings = load_settings(problems=problems)
    apply_appearance(settings)
    store, store_note = open_store_or_ask()
    if store is None:
        return 1  # the user chose Quit
    window = MainWindow(store, settings, EngineThread())
    window.show()
    for problem in problems:
        window.show_problem("Settings reset", problem)
    if store_note:
        window.show_problem("Conversations", store_note)
    window.start_engine()
    return app.exec()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [FROZEN_FLAG]:  # the engine's kernel check in a frozen app, which has no `python -m`
        from engine.kernel_check import child_main

        return child_main(argv[1:])
    if argv[:1] == [TRIAL_FLAG]:  # a model file's trial load (engine/model_trial.py), likewise
        from engine.model_trial import child_main as trial_main

        return trial_main(argv[1:])
    parser = build_parser()
    parser.add_argument(
        "--self-test",
        nargs="?",
        const="",
        metavar="MODEL",
        help="start offscreen, load MODEL (default: a tiny synthetic one), answer once, exit 0 if all worked",
    )
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if args.self_test is not None:
        from ui.self_test import run_self_test

        return run_self_test(args.self_test or None)
    if args.command is None:
        return launch_window([])
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
