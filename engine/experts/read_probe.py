"""How fast this machine's disk serves expert-sized random reads, and what they cost its CPU.

The expert manager reads experts as `io.py` does with WILLNEED: every range asked of the
kernel at once (posix_fadvise), then a pread of each in order, which waits for the pages in
flight instead of reading them again. The probe does the same on ranges of one expert
matrix's size at random page-aligned offsets of a file, cold (dropped from the page cache
first, and after), and measures wall time and machine-wide CPU time (/proc/stat, the
kernel's work included): the two figures the speed prediction turns missed bytes into.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.experts.page_control import PAGE


@dataclass(frozen=True)
class ReadSpeed:
    gbps: float  # GB (1e9 bytes) per second
    cpu_s_per_gb: float  # machine CPU seconds per GB read
    bytes_read: int


def machine_busy_seconds() -> float:
    """CPU seconds every core has spent busy since boot (idle and iowait left out); Linux only."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def drop_cached(fd: int) -> None:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def read_willneed_confirmed(fd: int, ranges: list[tuple[int, int]]) -> None:
    for offset, nbytes in ranges:
        os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_WILLNEED)
    buffer = memoryview(bytearray(max(n for _, n in ranges)))
    for offset, nbytes in ranges:
        os.preadv(fd, [buffer[:nbytes]], offset)


def random_ranges(file_size: int, range_bytes: int, count: int, seed: int | None = None) -> list[tuple[int, int]]:
    """`count` page-aligned ranges of `range_bytes` inside the file, not overlapping."""
    slots = max(1, (file_size - range_bytes) // (range_bytes + PAGE))
    rng = np.random.default_rng(seed)
    picks = rng.choice(slots, size=min(count, slots), replace=False)
    return [(int(slot) * (range_bytes + PAGE) // PAGE * PAGE, range_bytes) for slot in picks]


def probe_reads(path: Path, range_bytes: int, count: int = 600, seed: int | None = None) -> ReadSpeed:
    """Read `count` random ranges of `range_bytes` from `path`, cold. Other ranges each time
    (`seed` None): a virtual disk's host may cache what was read before, which would flatter
    a second probe of the same ranges (seen here: 0.28 then 2.2 GB/s on one file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        ranges = random_ranges(os.fstat(fd).st_size, range_bytes, count, seed)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # as the expert I/O's descriptor is
        drop_cached(fd)
        busy, started = machine_busy_seconds(), time.perf_counter()
        read_willneed_confirmed(fd, ranges)
        seconds, cpu = time.perf_counter() - started, machine_busy_seconds() - busy
        drop_cached(fd)
    finally:
        os.close(fd)
    total = sum(n for _, n in ranges)
    return ReadSpeed(gbps=total / seconds / 1e9, cpu_s_per_gb=max(0.0, cpu) / (total / 1e9), bytes_read=total)


def write_scratch_file(path: Path, nbytes: int) -> None:
    """A file of real (not sparse) blocks to probe when no model is on disk yet; on the disk
    the models will live on, since that is the one that matters."""
    chunk = np.random.default_rng(0).bytes(8 << 20)
    with open(path, "wb") as f:
        for _ in range(max(1, nbytes // len(chunk))):
            f.write(chunk)
        f.flush()
        os.fdatasync(f.fileno())
