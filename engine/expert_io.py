"""Reading experts into the page cache and evicting them, off the thread that computes.

Measured on the 4B shape (see bench/memory_budget.py for the figures of a run): reading an
expert with pread runs at about 1 GB/s here, MADV_POPULATE_READ on llama.cpp's mapping at
about 0.1 GB/s, page faults at 0.1-0.2 GB/s (each fault reads a small window
synchronously). So prefetch is pread into a scratch buffer: the pages land in the page
cache and llama.cpp's later touches are minor faults. Our descriptor is marked
POSIX_FADV_RANDOM so that a read brings no neighbouring expert along.

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

from engine.page_control import MADV_DONTNEED, MADV_PAGEOUT, PAGE, madvise

log = logging.getLogger(__name__)


class ExpertIO:
    """A worker thread that reads and evicts experts in the order asked.

    `file_ranges[key]` is [3, 2] of (file offset, bytes); `evict_spans[key]` [3, 2] of
    page-aligned [start, end) addresses in llama.cpp's mapping and `evict_file_spans` the
    same pages as file offsets.
    """

    def __init__(
        self,
        path,
        file_ranges: np.ndarray,
        evict_spans: np.ndarray,
        evict_file_spans: np.ndarray,
        wanted: np.ndarray,
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
        self._wanted = wanted  # the cache's residency flags: a key evicted meanwhile is not read
        self._buffer = bytearray(int(file_ranges[:, :, 1].max()) + PAGE)
        self._pageout = MADV_PAGEOUT
        # Evictions (and calls) go before reads: they keep the budget, reads only save time.
        self._urgent: collections.deque = collections.deque()
        self._reads: collections.deque = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self.current_stamp = 0  # the latest access the computing thread has made
        n_keys = len(file_ranges)
        self.read_done_at = np.full(n_keys, np.nan)
        self.used_at = np.full(n_keys, np.nan)
        self.late_by: list[float] = []  # seconds a read finished after its expert was needed
        self.bytes_read = 0
        self.stale_reads = 0
        self.evictions = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="expert-io", daemon=True)
        self._thread.start()

    # --- called from the computing thread ---------------------------------------------------
    def read(self, keys: np.ndarray, stamp: int) -> None:
        """Read `keys`, unless the computing thread has gone past access `stamp` by then."""
        self.read_done_at[keys] = np.nan
        self.used_at[keys] = np.nan
        self._put(self._reads, [(int(key), stamp) for key in keys])

    def evict(self, keys: np.ndarray) -> None:
        if len(keys):
            self._put(self._urgent, [(self.evict_now, keys)])

    def call(self, fn) -> None:
        """Run `fn()` on the worker, after the evictions and calls queued before it."""
        self._put(self._urgent, [(fn, None)])

    def wait_idle(self, timeout: float = 30.0) -> bool:
        done = threading.Event()
        self.call(done.set)
        return done.wait(timeout)

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)
        os.close(self._fd)

    def _put(self, jobs: collections.deque, items: list) -> None:
        if items:
            with self._wake:
                jobs.extend(items)
                self._wake.notify()

    # --- the worker --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._urgent or self._reads or self._stopping):
                    self._wake.wait()
                if self._stopping:
                    return
                if self._urgent:
                    fn, arg = self._urgent.popleft()
                else:
                    fn, arg = self._read_job(*self._reads.popleft())
            try:
                fn(arg) if arg is not None else fn()
            except Exception:  # a failed read only costs speed: the compute faults the pages in
                self.failures += 1
                if self.failures == 1:
                    log.exception("expert I/O failed")

    def _read_job(self, key: int, stamp: int):
        if stamp < self.current_stamp:  # that layer has run: llama.cpp faulted the pages in itself
            self.stale_reads += 1
            return (lambda: None), None
        return self._read, key

    def _read(self, key: int) -> None:
        if not self._wanted[key]:
            return
        view = memoryview(self._buffer)
        for offset, nbytes in self._file_ranges[key]:
            self.bytes_read += os.preadv(self._fd, [view[: int(nbytes)]], int(offset))
        done = time.perf_counter()
        self.read_done_at[key] = done
        if self.used_at[key] < done:  # llama.cpp reached this expert before we had read it
            self.late_by.append(done - self.used_at[key])

    def evict_now(self, keys: np.ndarray) -> None:
        """Evict on the calling thread (the worker's own jobs, the manager's sweep)."""
        for key in keys:
            spans = zip(self._evict_spans[key], self._evict_file_spans[key], strict=True)
            for (start, end), (file_start, file_end) in spans:
                if not madvise(int(start), int(end), self._pageout) and self._pageout == MADV_PAGEOUT:
                    log.info("MADV_PAGEOUT refused (kernel older than 5.4?); using MADV_DONTNEED")
                    self._pageout = MADV_DONTNEED
                    madvise(int(start), int(end), self._pageout)
                if file_end > file_start:
                    os.posix_fadvise(self._fd, int(file_start), int(file_end - file_start), os.POSIX_FADV_DONTNEED)
            self.evictions += 1
