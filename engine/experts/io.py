"""Reading experts into the page cache and evicting them, off the thread that computes.

Measured on the 4B shape (bench/memory_budget.py prints a run's figures): pread of an
expert matrix runs at about 1 GB/s here, MADV_POPULATE_READ on llama.cpp's mapping at about
0.1 GB/s, page faults at 0.1-0.2 GB/s (each fault reads a small window synchronously). So
prefetch is pread into a scratch buffer: the pages land in the page cache and llama.cpp's
later touches are minor faults. Our descriptor is marked POSIX_FADV_RANDOM so that a read
brings no neighbouring expert along. Several workers keep several reads in flight.

Eviction: MADV_PAGEOUT drops the pages from llama.cpp's mapping (about 0.5 ms per 4B
expert, so it runs here, not in the callback), then POSIX_FADV_DONTNEED drops them from
the page cache if they were read but never mapped. Only whole pages inside an expert are
evicted: a page it shares with a neighbour may belong to a kept one.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time

import numpy as np

from engine.experts.page_control import MADV_DONTNEED, MADV_PAGEOUT, PAGE, madvise

log = logging.getLogger(__name__)

N_MATRICES = 3  # gate, up, down


class ExpertIO:
    """Worker threads that evict and read experts, evictions first.

    `file_ranges[key]` is [3, 2] of (file offset, bytes); `evict_spans[key]` [3, 2] of
    page-aligned [start, end) addresses in llama.cpp's mapping and `evict_file_spans` the
    same pages as file offsets. `wanted` is the cache's residency: a key evicted before its
    read starts is not read.
    """

    def __init__(
        self,
        path,
        file_ranges: np.ndarray,
        evict_spans: np.ndarray,
        evict_file_spans: np.ndarray,
        wanted: np.ndarray,
        *,
        n_threads: int = 2,
    ) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        with contextlib.suppress(OSError):
            # Dirty pages cannot be evicted: a model written or downloaded moments ago
            # would stay in RAM whatever we advise until the kernel writes it back.
            os.fdatasync(self._fd)
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)  # a hint only
        self._file_ranges = file_ranges
        self._evict_spans = evict_spans
        self._evict_file_spans = evict_file_spans
        self._wanted = wanted
        self._buffer_bytes = int(file_ranges[:, :, 1].max()) + PAGE
        self._pageout = MADV_PAGEOUT
        self._urgent: collections.deque = collections.deque()  # evictions and calls
        self._reads: collections.deque = collections.deque()  # (key, matrix, stamp)
        self._lock = threading.Condition()
        self._read_finished = threading.Condition(self._lock)
        self._stopping = False
        self.current_stamp = 0  # the latest access the computing thread has made
        n_keys = len(file_ranges)
        self._matrices_left = np.zeros(n_keys, dtype=np.int64)
        self.read_done_at = np.zeros(n_keys)  # when each key's last read completed
        self.bytes_read = 0
        self.failures = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"expert-io-{i}", daemon=True) for i in range(n_threads)
        ]
        for thread in self._threads:
            thread.start()

    # --- called from the computing thread ---------------------------------------------------
    def read(self, keys: np.ndarray, stamp: int) -> None:
        """Read `keys`, unless the computing thread has gone past access `stamp` by then."""
        if len(keys):
            with self._lock:
                self._matrices_left[keys] = N_MATRICES
                self._reads.extend((int(k), m, stamp) for k in keys for m in range(N_MATRICES))
                self._lock.notify_all()

    def wait_for(self, keys: np.ndarray, timeout: float = 10.0) -> float:
        """Block until `keys` are read (or dropped); return the seconds waited."""
        started = time.perf_counter()
        with self._read_finished:
            self._read_finished.wait_for(lambda: not self._matrices_left[keys].any(), timeout)
        return time.perf_counter() - started

    def evict(self, keys: np.ndarray) -> None:
        if len(keys):
            self._put_urgent((self.evict_now, keys))

    def call(self, fn) -> None:
        """Run `fn()` on a worker, before any read still queued."""
        self._put_urgent((fn, None))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        done = threading.Event()
        self.call(done.set)
        return done.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        os.close(self._fd)

    def _put_urgent(self, job) -> None:
        with self._lock:
            self._urgent.append(job)
            self._lock.notify()

    # --- the workers --------------------------------------------------------------------------
    def _run(self) -> None:
        buffer = memoryview(bytearray(self._buffer_bytes))
        while True:
            with self._lock:
                while not (self._urgent or self._reads or self._stopping):
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._urgent.popleft() if self._urgent else None
                read = self._reads.popleft() if job is None else None
            try:
                if job is not None:
                    fn, arg = job
                    fn(arg) if arg is not None else fn()
                else:
                    self._read(*read, buffer)
            except Exception:  # a failed read only costs speed: the compute faults the pages in
                self.failures += 1
                if self.failures == 1:
                    log.exception("expert I/O failed")
                if read is not None:
                    self._finished(read[0], 0)

    def _read(self, key: int, matrix: int, stamp: int, buffer: memoryview) -> None:
        n = 0
        # Skipped when that layer has run (llama.cpp faulted the pages in itself) or the key
        # was evicted meanwhile.
        if stamp >= self.current_stamp and self._wanted[key]:
            offset, nbytes = self._file_ranges[key, matrix]
            n = os.preadv(self._fd, [buffer[: int(nbytes)]], int(offset))
        self._finished(key, n)

    def _finished(self, key: int, nbytes: int) -> None:
        with self._lock:
            self.bytes_read += nbytes
            self._matrices_left[key] -= 1
            if self._matrices_left[key] <= 0:
                self._matrices_left[key] = 0
                self.read_done_at[key] = time.perf_counter()
                self._read_finished.notify_all()

    def evict_now(self, keys: np.ndarray) -> None:
        """Evict on the calling thread (the workers' own jobs, the manager's sweep)."""
        for key in keys:
            spans = zip(self._evict_spans[key], self._evict_file_spans[key], strict=True)
            for (start, end), (file_start, file_end) in spans:
                if not madvise(int(start), int(end), self._pageout) and self._pageout == MADV_PAGEOUT:
                    log.info("MADV_PAGEOUT refused (kernel older than 5.4?); using MADV_DONTNEED")
                    self._pageout = MADV_DONTNEED
                    madvise(int(start), int(end), self._pageout)
                if file_end > file_start:
                    os.posix_fadvise(self._fd, int(file_start), int(file_end - file_start), os.POSIX_FADV_DONTNEED)
