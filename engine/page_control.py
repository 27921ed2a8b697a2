"""llama.cpp's mapping of the model file: where it is, what is resident, dropping it.

Linux (and other systems with /proc and mincore); elsewhere the figures are empty and
the calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE
MADV_DONTNEED = 4
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform != "win32" else None


def file_mappings(path: Path) -> list[tuple[int, int]]:
    """(start, end) address ranges where this process maps `path`."""
    ranges = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].rstrip("\n") == str(path):
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    ranges.append((start, end))
    except OSError:
        return []
    return ranges


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform != "win32" else None


def resident_bytes(start: int, end: int) -> int:
    """Bytes of [start, end) that are in RAM, by mincore (start must be page aligned)."""
    if _libc is None or end <= start:
        return 0
    n_pages = (end - start + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * n_pages)()
    if _libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(end - start), vec) != 0:
        return 0
    return int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1)) * PAGE


def drop_mapped_pages(path: Path) -> int:
    """Unmap this process's pages of `path` (they stay in the page cache); return bytes advised.

    On a read-only shared mapping this loses nothing: a page used again comes back by a
    minor fault from the page cache, without disk I/O.
    """
    if _libc is None or not sys.platform.startswith("linux"):
        return 0
    advised = 0
    for start, end in file_mappings(path):
        if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED) == 0:
            advised += end - start
        else:
            log.warning("madvise(DONTNEED) on %s failed: errno %d", path, ctypes.get_errno())
    return advised
