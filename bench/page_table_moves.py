"""What moving an expert slot's mapping costs when another thread of the process computes.

Direct reads put each expert matrix into RAM of our own and move that RAM's mapping to the
matrix's place in llama.cpp's mapping (mremap, `engine/experts/slots.py`); evictions map empty
memory over it. Each such change to the page tables must flush the translation caches of every
CPU that is running the process at that moment: during decode, llama.cpp's second thread,
which spins at its barriers (GOMP_SPINCOUNT) while the router hook runs. In a virtual machine
that flush is an interrupt sent to the other virtual CPU and waited for.

This times the same move (a populated mapping of one 4B expert matrix, 161 pages, back and
forth between two places), alone and while a second thread computes on the other core.

    python bench/page_table_moves.py [--moves 2000]

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import threading
import time
from pathlib import Path

if not __package__:  # run as a file: `engine` must be the package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np  # noqa: E402

from bench.machine import machine_figures  # noqa: E402
from engine.experts.slots import (  # noqa: E402
    MAP_ANONYMOUS,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    map_fixed,
    move_mapping,
)

PAGES = 161  # the whole pages of one expert matrix of the 4B shape


class Sibling:
    """A thread computing on another core (numpy releases the GIL inside its loops), as
    llama.cpp's second thread does. (What the flushes cost that thread is not measured here:
    its Python loop and the moves' share one GIL, which would confound the figure.)"""

    def __init__(self, cpu: int) -> None:
        self._stop = threading.Event()
        self._cpu = cpu
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        os.sched_setaffinity(threading.get_native_id(), {self._cpu})
        a, b = np.ones(1 << 20), np.ones(1 << 20)
        while not self._stop.is_set():
            np.multiply(a, b, out=a)

    def __enter__(self) -> Sibling:
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def time_moves(moves: int) -> float:
    """Microseconds per move of a populated mapping of PAGES pages (median of 5 rounds)."""
    nbytes = PAGES * mmap.PAGESIZE
    fd = os.memfd_create("page-table-moves", os.MFD_CLOEXEC)
    os.ftruncate(fd, nbytes)
    places = [mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE) for _ in range(2)]  # reserved ranges
    a, b = (np.frombuffer(p, dtype=np.uint8).ctypes.data for p in places)
    map_fixed(a, nbytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd)
    map_fixed(b, nbytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(moves // 2):
            move_mapping(a, b, nbytes)
            move_mapping(b, a, nbytes)
        rounds.append((time.perf_counter() - started) / (moves // 2 * 2) * 1e6)
    os.close(fd)
    return float(np.median(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=2000)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("this needs two cores (one for the moves, one for the computing thread)")
    os.sched_setaffinity(threading.get_native_id(), {cpus[0]})
    machine = machine_figures()
    print(f"machine: {machine['cpu']} ({', '.join(machine['cpu_flags'])}); llama.cpp: {machine['llama_build']}")
    alone = time_moves(args.moves)
    with Sibling(cpus[1]):
        beside = time_moves(args.moves)
    print(f"moving a populated {PAGES}-page mapping: {alone:.1f} us alone, {beside:.1f} us beside a computing thread")
    print(f"ratio: {beside / alone:.1f}x")
    figures = {"pages": PAGES, "move_us_alone": round(alone, 2), "move_us_beside_compute": round(beside, 2)}
    figures["ratio"] = round(beside / alone, 2)
    print(json.dumps({**figures, **machine}))


if __name__ == "__main__":
    main()
