"""Where the process's memory is: cheap enough to poll twice a second.

Model bytes resident are counted with mincore over llama.cpp's own mapping of the
file (found in /proc/self/maps), so they are the pages really in RAM, not a guess.
On systems without /proc the figures that need it are None.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

PAGE = mmap.PAGESIZE


@dataclass(frozen=True)
class MemoryReport:
    rss_bytes: int
    rss_anon_bytes: int | None
    rss_file_bytes: int | None
    model_bytes: int  # the model's tensors
    model_resident_bytes: int | None  # of those, in RAM now
    model_file_backed: bool  # True: weights are pages of the mapped file, evictable
    kv_bytes: int
    kv_global_bytes: int
    kv_window_bytes: int


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


def process_rss() -> tuple[int, int | None, int | None]:
    """(rss, anonymous part, file-backed part); the parts need Linux's /proc."""
    rss = psutil.Process().memory_info().rss
    fields = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                    key, value = line.split(":")
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:
        return rss, None, None
    return rss, fields.get("RssAnon"), fields.get("RssFile", 0) + fields.get("RssShmem", 0)
