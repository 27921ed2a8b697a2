"""llama.cpp's mapping of the model file: where it is, what is resident, dropping it.

Linux (and other systems with /proc and mincore); elsewhere the figures are empty and
the calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE
MADV_DONTNEED = 4
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform != "win32" else None


MADV_RANDOM = 1
MADV_PAGEOUT = 21  # Linux 5.4
MADV_POPULATE_READ = 22  # Linux 5.14
MADV_POPULATE_WRITE = 23  # Linux 5.14
MADV_NOHUGEPAGE = 15
SUPPORTED = sys.platform.startswith("linux")


@dataclass(frozen=True)
class FileMapping:
    """One mapping of a file: [start, end) in memory shows the file from `file_offset` on."""

    start: int
    end: int
    file_offset: int

    def address(self, offset: int) -> int:
        """The address of file offset `offset` (which must lie inside this mapping)."""
        return self.start + offset - self.file_offset

    def covers(self, offset: int, nbytes: int) -> bool:
        return self.file_offset <= offset and offset + nbytes <= self.file_offset + (self.end - self.start)


def mappings_of(path: Path) -> list[FileMapping]:
    """Where this process maps `path`, from /proc/self/maps (empty elsewhere)."""
    found = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].rstrip("\n") == str(path):
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    found.append(FileMapping(start, end, int(parts[2], 16)))
    except OSError:
        return []
    return found


def file_mappings(path: Path) -> list[tuple[int, int]]:
    """(start, end) address ranges where this process maps `path`."""
    return [(m.start, m.end) for m in mappings_of(path)]


def pages_inside(address: int, nbytes: int) -> tuple[int, int]:
    """[start, end) of the whole pages inside [address, address + nbytes) (maybe empty)."""
    start = -(-address // PAGE) * PAGE
    end = (address + nbytes) // PAGE * PAGE
    return start, max(start, end)


def pages_touched(address: int, nbytes: int) -> tuple[int, int]:
    """[start, end) of every page that [address, address + nbytes) touches."""
    return address // PAGE * PAGE, -(-(address + nbytes) // PAGE) * PAGE


def madvise(start: int, end: int, advice: int) -> bool:
    """madvise over page-aligned [start, end); False (errno kept) when the kernel refuses."""
    start, end = int(start), int(end)  # ctypes takes no numpy integers
    if _libc is None or end <= start:
        return end <= start
    return _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), advice) == 0


def residency(start: int, end: int) -> np.ndarray:
    """One bool per page of page-aligned [start, end): in RAM now (mincore)."""
    start, end = int(start), int(end)  # ctypes takes no numpy integers
    n_pages = (end - start + PAGE - 1) // PAGE
    if _libc is None or n_pages <= 0:
        return np.zeros(max(n_pages, 0), dtype=bool)
    vec = np.zeros(n_pages, dtype=np.uint8)
    if _libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(end - start), vec.ctypes.data_as(ctypes.c_void_p)) != 0:
        return np.zeros(n_pages, dtype=bool)
    return (vec & 1).astype(bool)


def all_resident(start: int, end: int) -> bool:
    """Whether every page of page-aligned [start, end) is in RAM: `residency(...).all()` without
    numpy (a few microseconds; the computing thread asks it for every expert it waits for)."""
    n_pages = (int(end) - int(start) + PAGE - 1) // PAGE
    if _libc is None or n_pages <= 0:
        return n_pages <= 0
    vec = bytearray(n_pages)
    buffer = (ctypes.c_char * n_pages).from_buffer(vec)
    if _libc.mincore(ctypes.c_void_p(int(start)), ctypes.c_size_t(int(end) - int(start)), buffer) != 0:
        return False
    return 0 not in vec  # the kernel writes 1 for a resident page, 0 for one that is not


def resident_bytes(start: int, end: int) -> int:
    """Bytes of [start, end) that are in RAM, by mincore (start must be page aligned)."""
    return int(np.count_nonzero(residency(start, end))) * PAGE


def drop_file_ranges(path: Path, ranges: list[tuple[int, int]]) -> None:
    """Unmap and drop from the page cache the whole pages inside each (offset, nbytes) of `path`.

    For weights llama.cpp copied into memory of its own: their file pages are then dead
    weight. Best effort: a large folio of the page cache (Linux 6.x reads files in folios up
    to 2 MiB) that also holds pages still mapped stays, so residency figures leave these
    ranges out (`resident_bytes_outside`) rather than trust the drop.
    """
    if not SUPPORTED:
        return
    for mapping in mappings_of(path):
        for offset, nbytes in ranges:
            if mapping.covers(offset, nbytes):
                madvise(*pages_inside(mapping.address(offset), nbytes), MADV_DONTNEED)
    with open(path, "rb") as file:
        for offset, nbytes in ranges:
            start, end = pages_inside(offset, nbytes)
            os.posix_fadvise(file.fileno(), start, end - start, os.POSIX_FADV_DONTNEED)


def resident_bytes_outside(start: int, end: int, holes: list[tuple[int, int]]) -> int:
    """resident_bytes of [start, end) not counting the page-aligned [hole start, hole end)s."""
    resident = residency(start, end)
    for hole_start, hole_end in holes:
        first, last = max(hole_start, start), min(hole_end, end)
        if first < last:
            resident[(first - start) // PAGE : (last - start) // PAGE] = False
    return int(np.count_nonzero(resident)) * PAGE


def drop_mapped_pages(path: Path) -> int:
    """Unmap this process's pages of `path` (they stay in the page cache); return bytes advised.

    On a read-only shared mapping this loses nothing: a page used again comes back by a
    minor fault from the page cache, without disk I/O.
    """
    if not SUPPORTED:
        return 0
    advised = 0
    for start, end in file_mappings(path):
        if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED) == 0:
            advised += end - start
        else:
            log.warning("madvise(DONTNEED) on %s failed: errno %d", path, ctypes.get_errno())
    return advised
