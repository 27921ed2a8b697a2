"""How fast each way of reading experts is, and what it costs the machine's CPU.

On 2 cores the reads' own CPU time competes with llama.cpp's compute, so a read method is
chosen by both figures (shared/ENGINE_NOTES.md). The same random experts of the model file,
cold (dropped from the page cache first), are read:
- pread: worker threads copy each matrix into a scratch buffer, as the page cache fills;
- willneed: posix_fadvise(WILLNEED) asks the kernel to read each matrix asynchronously, and
  completion is seen with mincore over a mapping of the file.
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

from engine.experts.map import expert_map  # noqa: E402
from engine.experts.page_control import pages_touched, residency  # noqa: E402
from engine.experts.read_probe import drop_cached as drop  # noqa: E402
from engine.experts.read_probe import machine_busy_seconds, read_willneed_confirmed  # noqa: E402
from engine.model_info import inspect_model  # noqa: E402

METHODS = ("pread", "willneed", "willneed_confirmed")


def read_pread(fd: int, ranges: list[tuple[int, int]], threads: int = 4) -> None:
    size = max(n for _, n in ranges)

    def worker(chunk: list[tuple[int, int]]) -> None:
        buffer = memoryview(bytearray(size))
        for offset, nbytes in chunk:
            os.preadv(fd, [buffer[:nbytes]], offset)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, [ranges[i::threads] for i in range(threads)]))


def read_willneed(fd: int, ranges: list[tuple[int, int]], base: int) -> None:
    for offset, nbytes in ranges:
        os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_WILLNEED)
    pending = [pages_touched(base + offset, nbytes) for offset, nbytes in ranges]
    while pending:
        pending = [span for span in pending if not residency(*span).all()]
        if pending:
            time.sleep(0.0002)


def measure(path: Path, n_experts: int, seed: int = 0) -> dict:
    experts = expert_map(inspect_model(path))
    rng = np.random.default_rng(seed)
    n_keys = experts.n_layer * experts.n_expert
    keys = rng.choice(n_keys, size=min(n_experts, n_keys), replace=False)
    ranges = [r for key in keys for r in experts.ranges(*divmod(int(key), experts.n_expert))]
    total = sum(n for _, n in ranges)
    figures = {"experts": len(keys), "bytes": total}
    fd = os.open(path, os.O_RDONLY)
    mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    base = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # as the expert I/O's descriptor is
        for name, run in (
            ("pread", lambda: read_pread(fd, ranges)),
            ("willneed", lambda: read_willneed(fd, ranges, base)),
            ("willneed_confirmed", lambda: read_willneed_confirmed(fd, ranges)),
        ):
            drop(fd)
            busy, started = machine_busy_seconds(), time.perf_counter()
            run()
            seconds, cpu = time.perf_counter() - started, machine_busy_seconds() - busy
            figures[f"{name}_gbps"] = total / seconds / 1e9
            figures[f"{name}_cpu_s_per_gb"] = cpu / (total / 1e9)
        drop(fd)
    finally:
        mapped.close()
        os.close(fd)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--experts", type=int, default=200)
    args = parser.parse_args(argv)
    figures = measure(args.model, args.experts)
    for name in METHODS:
        print(f"{name:>18}: {figures[f'{name}_gbps']:.2f} GB/s, {figures[f'{name}_cpu_s_per_gb']:.2f} s CPU per GB")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
