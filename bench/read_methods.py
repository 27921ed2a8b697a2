"""How fast each way of reading experts is, and what it costs the machine's CPU.

On 2 cores the reads' own CPU time competes with llama.cpp's compute, so a read method is
chosen by both figures (shared/ENGINE_NOTES.md). The same random experts of the model file,
cold (dropped from the page cache first), are read:
- pread: worker threads copy each matrix into a scratch buffer, as the page cache fills;
- willneed: posix_fadvise(WILLNEED) asks the kernel to read each matrix asynchronously, and
  completion is seen with mincore over a mapping of the file;
- direct: O_DIRECT asynchronous reads (Linux AIO) of each matrix's whole pages into memory
  allocated beforehand, past the page cache (engine/experts/direct_io.py).
Each method reads other experts (a virtual disk's host may cache what was read before).
Direct reads are then timed again with at most 1, 2, 4, 8 and 16 in flight (`DEPTHS`):
whether the disk serves a deeper queue faster.
CPU is machine-wide busy time from /proc/stat (kernel work included) per GB read.

    python bench/read_methods.py MODEL.gguf [--experts 200]

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if not __package__:  # run as a file: `engine` must be the package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np  # noqa: E402

from engine.experts.direct_io import direct_reads_work  # noqa: E402
from engine.experts.linux_aio import AioContext  # noqa: E402
from engine.experts.map import ExpertMap, expert_map  # noqa: E402
from engine.experts.page_control import (  # noqa: E402
    MADV_POPULATE_WRITE,
    PAGE,
    madvise,
    pages_inside,
    pages_touched,
    residency,
)
from engine.experts.read_probe import drop_cached as drop  # noqa: E402
from engine.experts.read_probe import machine_busy_seconds, read_willneed_confirmed  # noqa: E402
from engine.model_info import inspect_model  # noqa: E402

METHODS = ("pread", "willneed", "willneed_confirmed", "direct")
# Direct reads with at most this many in flight (each depth other experts): whether a deeper
# queue gets more from the disk. On this project's 2-core VMs (a virtio disk; an Intel Xeon,
# 2026-12-05) not consistently: at depth 1, 2, 4, 8 and 16 the 4B's matrices (648 KiB) read at
# 1.26, 1.18, 1.51, 1.21, 1.59 GB/s and, half an hour later, 1.13, 1.11, 1.47, 1.17, 1.55 (the
# same experts per depth both times: seed 0); 648 KiB at random offsets of the 21B's file at
# depth 1, 2, 4, 8, 16, 32: 1.25, 1.20, 1.00, 0.99, 0.85, 0.71; the 21B's matrices at depth 1-16:
# 1.01-1.14.
DEPTHS = (1, 2, 4, 8, 16)


def read_pread(fd: int, ranges: list[tuple[int, int]], threads: int = 4) -> None:
    size = max(n for _, n in ranges)

    def worker(chunk: list[tuple[int, int]]) -> None:
        buffer = memoryview(bytearray(size))
        for offset, nbytes in chunk:
            os.preadv(fd, [buffer[:nbytes]], offset)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, [ranges[i::threads] for i in range(threads)]))


WILLNEED_PATIENCE_S = 10.0  # then the ranges still not in RAM are read with pread (counted)


def read_willneed(fd: int, ranges: list[tuple[int, int]], base: int) -> int:
    """Returns how many ranges the kernel had not read after WILLNEED_PATIENCE_S (read here).

    The kernel may drop an asynchronous readahead: on 2026-12-04 this probe waited 20 minutes
    for pages nothing was reading any more (the disk idle), on the 21B file."""
    for offset, nbytes in ranges:
        os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_WILLNEED)
    pending = [(r, pages_touched(base + r[0], r[1])) for r in ranges]
    deadline = time.perf_counter() + WILLNEED_PATIENCE_S
    while pending:
        pending = [(r, span) for r, span in pending if not residency(*span).all()]
        if pending and time.perf_counter() > deadline:
            read_pread(fd, [r for r, _ in pending])
            return len(pending)
        if pending:
            time.sleep(0.0002)
    return 0


def whole_pages(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each range's whole pages as (offset, bytes): what a direct read reads (the pages at a
    matrix's ends stay file-backed in the manager)."""
    pages = [pages_inside(offset, nbytes) for offset, nbytes in ranges]  # file offsets page-align as addresses do
    return [(start, end - start) for start, end in pages if end > start]


class DirectReads:
    """O_DIRECT reads of each range's whole pages into memory allocated beforehand (before the
    clock starts, as the manager's slots are), one slot per range."""

    def __init__(self, path: Path, ranges: list[tuple[int, int]]) -> None:
        self.pages = whole_pages(ranges)
        self.bytes = sum(n for _, n in self.pages)
        self._slot = max((n for _, n in self.pages), default=PAGE)
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        self._memory = mmap.mmap(-1, self._slot * max(1, len(self.pages)))
        self._base = np.frombuffer(self._memory, dtype=np.uint8).ctypes.data
        madvise(self._base, self._base + self._slot * len(self.pages), MADV_POPULATE_WRITE)

    def run(self, depth: int | None = None) -> None:
        """Every read, at most `depth` in flight at a time (None: all at once)."""
        aio = AioContext(max(1, len(self.pages)))
        try:
            reads = [(i, self._fd, self._base + i * self._slot, n, offset) for i, (offset, n) in enumerate(self.pages)]
            while reads or aio.in_flight:
                room = len(reads) if depth is None else depth - aio.in_flight
                if room > 0:
                    del reads[: aio.submit(reads[:room])]
                if any(result < 0 for _, result in aio.reap(1)):
                    raise OSError("a direct read failed")
        finally:
            aio.close()

    def close(self) -> None:
        os.close(self._fd)
        self._memory.close()


def matrix_ranges(experts: ExpertMap, keys: np.ndarray) -> list[tuple[int, int]]:
    """(file offset, length) of every matrix of the experts numbered `keys` (layer * n_expert + expert)."""
    return [r for key in keys for r in experts.ranges(*divmod(int(key), experts.n_expert))]


def measure(path: Path, n_experts: int, seed: int = 0) -> dict:
    """Figures per method; a method this machine cannot use has None and says why."""
    experts = expert_map(inspect_model(path))
    rng = np.random.default_rng(seed)
    n_keys = experts.n_layer * experts.n_expert
    n = min(n_experts, n_keys // (len(METHODS) + len(DEPTHS)))
    keys = rng.choice(n_keys, size=n * (len(METHODS) + len(DEPTHS)), replace=False).reshape(-1, n)
    ranges = {name: matrix_ranges(experts, keys[i]) for i, name in enumerate(METHODS)}
    by_depth = {depth: matrix_ranges(experts, keys[len(METHODS) + i]) for i, depth in enumerate(DEPTHS)}
    figures = {"experts": n, "bytes": sum(b for _, b in ranges["pread"])}
    fd = os.open(path, os.O_RDONLY)
    mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    base = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
    why_not = direct_reads_work(path) or (None if whole_pages(ranges["direct"]) else "no matrix spans a whole page")
    direct = DirectReads(path, ranges["direct"]) if why_not is None else None
    runs = {
        "pread": lambda: read_pread(fd, ranges["pread"]),
        "willneed": lambda: read_willneed(fd, ranges["willneed"], base),
        "willneed_confirmed": lambda: read_willneed_confirmed(fd, ranges["willneed_confirmed"]),
        "direct": direct.run if direct else None,
    }
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # as the expert I/O's descriptor is
        for name, run in runs.items():
            if run is None:
                figures[f"{name}_gbps"] = figures[f"{name}_cpu_s_per_gb"] = None
                figures[f"{name}_unavailable"] = why_not
                continue
            drop(fd)
            busy, started = machine_busy_seconds(), time.perf_counter()
            late = run()
            seconds, cpu = time.perf_counter() - started, machine_busy_seconds() - busy
            if late:  # (the figure then includes the wait and those reads)
                figures[f"{name}_ranges_never_read"] = late
            total = direct.bytes if name == "direct" else sum(b for _, b in ranges[name])
            figures[f"{name}_gbps"] = total / seconds / 1e9
            figures[f"{name}_cpu_s_per_gb"] = cpu / (total / 1e9)
        figures["direct_gbps_by_depth"] = direct_gbps_by_depth(path, by_depth) if direct else None
        drop(fd)
    finally:
        mapped.close()
        os.close(fd)
        if direct:
            direct.close()
    return figures


def direct_gbps(path: Path, ranges: list[tuple[int, int]], depth: int | None = None) -> float | None:
    """GB/s of direct reads of `ranges`' whole pages, at most `depth` in flight (None: all at
    once); None if no range spans a whole page (a tiny test model): nothing to read directly."""
    reads = DirectReads(path, ranges)
    try:
        if not reads.bytes:
            return None
        started = time.perf_counter()
        reads.run(depth)
        return reads.bytes / (time.perf_counter() - started) / 1e9
    finally:
        reads.close()


def direct_gbps_by_depth(path: Path, by_depth: dict[int, list[tuple[int, int]]]) -> dict[str, float | None]:
    """GB/s of direct reads of each depth's ranges with at most that many in flight."""
    return {str(depth): direct_gbps(path, ranges, depth) for depth, ranges in by_depth.items()}


def direct_read_gbps(path: Path, target_bytes: int, seed: int) -> float | None:
    """GB/s of O_DIRECT reads of random experts' matrices, about `target_bytes` in all, all in
    flight at once (a second or so: a short look at the disk's speed at this moment, which on a
    shared virtual disk drifts by a factor of two over half an hour). None where direct reads
    cannot be used."""
    if direct_reads_work(path) is not None:
        return None
    experts = expert_map(inspect_model(path))
    n_keys = experts.n_layer * experts.n_expert
    n = max(1, min(n_keys, -(-target_bytes // experts.expert_bytes)))
    keys = np.random.default_rng(seed).choice(n_keys, size=n, replace=False)
    return direct_gbps(path, matrix_ranges(experts, keys))


def device_counters(path: Path) -> tuple[int, float] | None:
    """(bytes read, seconds with a request in flight) so far on the block device holding
    `path` (/sys/dev/block/MAJOR:MINOR/stat: sectors read, io_ticks); None if unknown."""
    st = os.stat(path)
    try:
        with open(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None
    return fields[2] * 512, fields[9] / 1e3


def describe(figures: dict, name: str) -> str:
    if figures[f"{name}_gbps"] is None:
        return f"{name}: not available here ({figures[f'{name}_unavailable']})"
    return f"{name}: {figures[f'{name}_gbps']:.2f} GB/s, {figures[f'{name}_cpu_s_per_gb']:.2f} s machine CPU per GB"


def describe_depths(figures: dict) -> str:
    by_depth = figures["direct_gbps_by_depth"]
    if not by_depth:
        return "direct, by reads in flight: not available here"
    return "direct, by reads in flight: " + ", ".join(
        f"{d}: {g:.2f} GB/s" if g is not None else f"{d}: no whole page to read" for d, g in by_depth.items()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--experts", type=int, default=200)
    args = parser.parse_args(argv)
    figures = measure(args.model, args.experts)
    for name in METHODS:
        print(describe(figures, name))
    print(describe_depths(figures))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
