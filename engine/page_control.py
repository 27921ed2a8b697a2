"""madvise on llama.cpp's mapping of the model file (Linux; a no-op elsewhere)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from pathlib import Path

from engine.memory_report import file_mappings

log = logging.getLogger(__name__)

MADV_DONTNEED = 4
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform.startswith("linux") else None


def drop_mapped_pages(path: Path) -> int:
    """Unmap this process's pages of `path` (they stay in the page cache); return bytes advised.

    On a read-only shared mapping this loses nothing: a page used again comes back by a
    minor fault from the page cache, without disk I/O.
    """
    if _libc is None:
        return 0
    advised = 0
    for start, end in file_mappings(path):
        if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED) == 0:
            advised += end - start
        else:
            log.warning("madvise(DONTNEED) on %s failed: errno %d", path, ctypes.get_errno())
    return advised
