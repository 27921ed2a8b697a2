"""Route llama.cpp's log into Python logging and remember its recent lines.

llama-cpp-python's own callback prints everything to stderr unless a `Llama` object
turned it down; the engine uses the lower-level classes, so it installs this instead.
The recent lines give load failures a reason ("tensor data is not within the file
bounds") and let tests compare our KV arithmetic with what llama.cpp allocated.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import deque

import llama_cpp

log = logging.getLogger("engine.llama_cpp")

# enum ggml_log_level of the vendored ggml: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5.
# (llama-cpp-python's own _logger still assumes the older numbering.) llama.cpp's INFO
# is chatty load detail: debug for us.
_ERROR, _CONT = 4, 5
_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_recent: deque[tuple[int, int, str]] = deque(maxlen=400)  # (sequence number, level, line)
_counter = [0]
_lock = threading.Lock()
_partial: list = ["", 0]  # text and level of a line llama.cpp sends in several calls


@llama_cpp.llama_log_callback
def _on_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    try:
        piece = text.decode("utf-8", errors="replace")
        with _lock:
            if not _partial[0] and level != _CONT:
                _partial[1] = level
            _partial[0] += piece
            if not _partial[0].endswith("\n"):
                return
            line, level = _partial[0].rstrip("\n"), _partial[1]
            _partial[0] = ""
            _counter[0] += 1
            _recent.append((_counter[0], level, line))
        log.log(_LEVELS.get(level, logging.DEBUG), "%s", line)
    except Exception:  # an exception must never cross back into C
        pass


def install() -> None:
    llama_cpp.llama_log_set(_on_log, ctypes.c_void_p(0))


def mark() -> int:
    """A position in the log; `lines_since(mark)` returns what came after it."""
    with _lock:
        return _counter[0]


def lines_since(position: int) -> list[str]:
    with _lock:
        return [line for seq, _, line in _recent if seq > position]


def errors_since(position: int) -> list[str]:
    """The error lines after `position`, oldest first, without their "function: " prefix and
    with runs of spaces collapsed (llama.cpp aligns numbers in columns)."""
    with _lock:
        found = [line for seq, level, line in _recent if seq > position and level == _ERROR]
    return [" ".join(line.split(": ", 1)[-1].split()) for line in found]


def last_error() -> str:
    """The most recent error line, for a user-facing message; empty when there is none."""
    with _lock:
        for _, level, line in reversed(_recent):
            if level == _ERROR and line.strip():
                return line.split(": ", 1)[-1].strip()
    return ""


install()
