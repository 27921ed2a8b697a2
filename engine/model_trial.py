"""A model file's first load happens in a child process, so that a crash cannot take the app down.

Our own checks (engine/model_info.py, engine/chat_template.py) refuse every malformed file
we know of before llama.cpp reads it; a file that passes them can still hit an assertion in
llama.cpp we have not met, and an assertion ends the process (SIGABRT), window and all. So
before this process loads a file it has not loaded before, a child process reads it with
llama.cpp the way a load does (architecture, hyper-parameters, vocabulary, every tensor's
shape) but with `no_alloc`: nothing is allocated or read from the weights, so even the 21B
takes a second or two. A child that dies or refuses turns into a ModelLoadError in words.
Files that passed are remembered by path, size and modification time (in `folder` when
given, else for this process).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from engine.errors import ModelLoadError
from engine.json_record import write_json_record
from engine.kernel_check import run_probe

log = logging.getLogger(__name__)

VERDICT_FILE = "model-trials.json"
FROZEN_FLAG = "--trial-load"
_OK_MARK = "trial load passed"
_KEEP = 256  # files remembered

_passed: set[str] = set()  # this process's


def trial_command(path: Path) -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_FLAG, str(path)]
    return [sys.executable, "-m", "engine.model_trial", str(path)]


def file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def check_model_loads(
    path: Path, folder: Path | None = None, *, command: Callable[[Path], list[str]] | None = None
) -> None:
    """Raise ModelLoadError unless llama.cpp reads `path` in a child process without failing."""
    key = file_identity(path)
    record = folder / VERDICT_FILE if folder is not None else None
    if key in _passed or key in _read(record):
        return
    failure = run_probe((command or trial_command)(path), ok_mark=_OK_MARK)
    if failure:
        log.warning("the trial load of %s failed: %s", path, failure)
        if "killed by" in failure:
            raise ModelLoadError(
                f"llama.cpp crashed reading {path.name} in a trial ({failure}): the file is damaged, or made "
                "for another version of llama.cpp. It was not loaded; the app is unaffected."
            )
        raise ModelLoadError(f"llama.cpp cannot load {path.name}; in a trial load {failure}")
    _passed.add(key)
    if record is not None:
        _write(record, key)


def _read(path: Path | None) -> list[str]:
    if path is None or not path.is_file():
        return []
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        return [k for k in known if isinstance(k, str)] if isinstance(known, list) else []
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable trial record %s: %s", path, exc)
        return []


def _write(path: Path, key: str) -> None:
    known = [k for k in _read(path) if k != key][-(_KEEP - 1) :] + [key]
    try:
        write_json_record(path, known)
    except OSError as exc:  # remembered for this session anyway
        log.warning("could not save the trial record %s: %s", path, exc)


def child_main(argv: list[str]) -> int:
    """The trial: llama.cpp loads the file's description and tensor shapes, allocating nothing."""
    import llama_cpp
    from llama_cpp import _internals

    from engine import llama_log
    from engine.ggml_libs import load_backends

    if len(argv) != 1:
        print("usage: python -m engine.model_trial FILE.gguf", file=sys.stderr)
        return 2
    llama_log.install()
    load_backends()
    mark = llama_log.mark()
    params = llama_cpp.llama_model_default_params()
    params.no_alloc = True
    params.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE  # llama.cpp asserts no_alloc is not combined with mmap
    try:
        model = _internals.LlamaModel(path_model=argv[0], params=params, verbose=False)
    except ValueError:  # the first error is the cause; the last only says the load failed
        print((llama_log.errors_since(mark) or ["llama.cpp gave no reason"])[0], file=sys.stderr)
        return 1
    model.close()
    print(_OK_MARK)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
