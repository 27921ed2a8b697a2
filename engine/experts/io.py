"""Reading experts into the page cache and evicting them.

Reads come in two kinds: exact (the layer about to run needs them) and speculative (a later
layer's experts guessed from the current hidden state); exact reads always go first. Each
read carries the last access (`stamp`) it is still useful for: once the computing thread
has gone past it, llama.cpp has faulted the pages in itself and the read is dropped.

How a read is done (`ReadMethod`, chosen by speed and by CPU time per GB, see
bench/read_methods.py; on 2 cores the reads' CPU time is taken from llama.cpp's compute):
- PREAD: worker threads copy each matrix into a scratch buffer; the pages land in the
  page cache and llama.cpp's later touches are minor faults.
- WILLNEED: the computing thread itself asks the kernel for each matrix with
  posix_fadvise(WILLNEED) the moment it knows it (in the router hook: exact reads, then the
  guesses), which puts every page of the range into the page cache, locked, and reads them
  asynchronously in large requests. The call returns once the reads are submitted (about
  0.25 ms of CPU per MB); issued from an I/O thread instead, each read waited for that thread
  to be scheduled on a core both of llama.cpp's threads were using: at a 1 GiB budget on the
  4B shape (2 cores, interleaved runs of 128 tokens) 3.37/3.63 tokens/s with waits of 106/97
  ms a token, 3.88/3.69 with exact reads issued here (waits 47-50 ms), 4.45/5.81 with every
  read issued here (waits 11-22 ms). Completion is checked only where it matters: `wait_for`
  (the layer about to use the experts) asks mincore, and for what has not arrived faults the
  pages in with MADV_POPULATE_READ, which sleeps until the reads in flight land. A watcher
  polling every read in flight cost CPU that llama.cpp needs; letting llama.cpp fault on
  pages still in flight instead made its threads wait inside the graph, where the other one
  spins at the next barrier.
Our descriptor is POSIX_FADV_RANDOM, so that a read brings no neighbouring expert along.

Eviction, on an I/O thread (it does not hold up a layer unless that thread falls behind:
`_hold_backlog`): MADV_DONTNEED unmaps the pages from llama.cpp's mapping, then
POSIX_FADV_DONTNEED drops them from the page cache. FADV_DONTNEED drops no folio that is only
partly inside the range or still mapped, and a page-cache folio can be up to 2 MiB: the experts
it left pages of were those within 2 MiB of their tensor's ends, next to weights that stay
mapped. For those (`shares_folios`) MADV_PAGEOUT, which splits such a folio, replaces
MADV_DONTNEED. Measured on the 4B shape at 1 GiB (interleaved, 128 tokens): PAGEOUT for all,
5.69/5.30 tokens/s, eviction and reads 105/111 ms of CPU a token; PAGEOUT for the edges only,
6.64/5.95 and 86/96 ms; peak resident the same (DONTNEED for all left about 80 MB of such
folios, 9% over the budget). Only whole pages inside an expert are evicted: a page it shares
with a neighbour may belong to a kept one.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import os
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from engine.experts.page_control import (
    MADV_DONTNEED,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    PAGE,
    all_resident,
    madvise,
)

log = logging.getLogger(__name__)

N_MATRICES = 3  # gate, up, down: the order llama.cpp uses them in, and the order they are read in
ALL_MATRICES = tuple(range(N_MATRICES))
_POLL_S = 0.00005  # between mincore checks while a layer waits for its WILLNEED reads
_WILLNEED_PATIENCE_S = 0.5  # then the waiting thread reads what has not arrived itself
# A key evicted this soon after its read was issued may still have pages in flight: locked,
# they survive the eviction and land afterwards. It is evicted again this long after the read.
_LANDING_S = 0.2


class ReadMethod(StrEnum):
    PREAD = "pread"
    WILLNEED = "willneed"
    DIRECT = "direct"  # O_DIRECT into RAM mapped in place: engine/experts/direct_io.py


@dataclass
class IOCounters:
    exact_keys: int = 0  # experts asked for exactly
    speculative_keys: int = 0  # and speculatively
    bytes_read: int = 0  # by reads that were not dropped
    held_dropped: int = 0  # DIRECT: speculative matrix reads dropped while queued (their expert let go of)
    busy_s: float = 0.0  # wall time with at least one read outstanding (WILLNEED: being issued)
    cpu_s: float = 0.0  # CPU time issuing reads and evicting, on any thread (not the kernel's asynchronous work)


class ExpertIO:
    """Reads and evictions of experts. Worker threads evict, and read (PREAD) in order: evictions
    first, then exact reads, then speculative ones; WILLNEED reads are issued by the caller.

    `file_ranges[key]` is [3, 2] of (file offset, bytes); `evict_spans[key]` [3, 2] of
    page-aligned [start, end) addresses in llama.cpp's mapping and `evict_file_spans` the
    same pages as file offsets; `touch_spans[key]` the pages each matrix touches (its
    boundary pages included). `wanted` is the cache's residency: a key evicted before its
    read starts is not read. `shares_folios`: the keys evicted with MADV_PAGEOUT (None: all).
    `backlog_limit`: the most evicted keys whose eviction may wait for a worker when a read
    is asked for (None: any); beyond it the caller evicts them itself (`_hold_backlog`).
    """

    def __init__(
        self,
        path,
        file_ranges: np.ndarray,
        evict_spans: np.ndarray,
        evict_file_spans: np.ndarray,
        touch_spans: np.ndarray,
        wanted: np.ndarray,
        *,
        shares_folios: np.ndarray | None = None,
        method: ReadMethod = ReadMethod.PREAD,
        n_threads: int = 2,
        backlog_limit: int | None = None,
    ) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        with contextlib.suppress(OSError):
            # Dirty pages cannot be evicted: a model written or downloaded moments ago
            # would stay in RAM whatever we advise until the kernel writes it back.
            os.fdatasync(self._fd)
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)  # a hint only
        self.method = ReadMethod(method)
        self._file_ranges = file_ranges
        self._evict_spans = evict_spans
        self._evict_file_spans = evict_file_spans
        self._touch_spans = touch_spans
        self._wanted = wanted
        self._pageout = MADV_PAGEOUT
        # Keys that may share a page-cache folio with weights that stay: only PAGEOUT drops those.
        self._shares_folios = np.ones(len(file_ranges), dtype=bool) if shares_folios is None else shares_folios
        self._buffer_bytes = int(file_ranges[:, :, 1].max()) + PAGE
        self._urgent: collections.deque = collections.deque()  # evictions and calls
        self._again: list[tuple[float, int]] = []  # heap of (when, key): evict once more then
        # Per key, evictions not yet done (queued, or to be done again when its read has landed).
        self.evictions_queued = np.zeros(len(file_ranges), dtype=np.int32)
        self._backlog_limit = backlog_limit
        self._keys_to_evict = 0  # in the eviction jobs queued
        # (key, matrix, stamp, generation): exact reads, speculative reads
        self._exact: collections.deque = collections.deque()
        self._speculative: collections.deque = collections.deque()
        self._lock = threading.Condition()
        self._read_finished = threading.Condition(self._lock)
        self._stopping = False
        self.current_stamp = 0  # the latest access the computing thread has made
        n_keys = len(file_ranges)
        self._matrices_left = np.zeros(n_keys, dtype=np.int64)
        self._generation = np.zeros(n_keys, dtype=np.int64)  # a newer request supersedes older jobs
        self.read_done_at = np.full(n_keys, -np.inf)  # when each key's last read completed (never: -inf)
        self._key_bytes = np.zeros(n_keys, dtype=np.int64)  # bytes its latest request read (0: dropped)
        self.counters = IOCounters()
        self._outstanding = 0
        self._busy_since = 0.0
        self.failures = 0
        self._can_populate = True
        # WILLNEED: the computing thread issues the reads; one worker evicts.
        n_threads = 1 if self.method is ReadMethod.WILLNEED else n_threads
        self._threads = [
            threading.Thread(target=self._issue_loop, name=f"expert-io-{i}", daemon=True) for i in range(n_threads)
        ]
        for thread in self._threads:
            thread.start()

    unmapped_bytes = 0  # model RAM held outside llama.cpp's mapping (DirectExpertIO has some)
    placed_bytes = 0  # of it, the experts' (PositionedExpertIO holds them all there)
    partial_reads = False  # reads whole keys only (a page not read faults in from the file anyway)

    # --- called from the computing thread ---------------------------------------------------
    def read(
        self, keys: np.ndarray, stamp: int, *, speculative: bool = False, matrices: tuple[int, ...] = ALL_MATRICES
    ) -> None:
        """Read `keys`, unless the computing thread has gone past access `stamp` by then
        (WILLNEED: submitted before this returns; PREAD: queued for the workers). Whole keys
        only (`partial_reads`): `matrices` must be all of them."""
        if matrices != ALL_MATRICES:
            raise ValueError("this expert I/O reads whole experts only")
        if not len(keys):
            return
        self._hold_backlog()
        with self._lock:
            queue = self._speculative if speculative else self._exact
            if speculative:
                self.counters.speculative_keys += len(keys)
            else:
                self.counters.exact_keys += len(keys)
            self._generation[keys] += 1
            self._key_bytes[keys] = 0
            new = self._matrices_left[keys] == 0
            self._outstanding += int(np.count_nonzero(new))
            if self._outstanding and self._outstanding == np.count_nonzero(new):
                self._busy_since = time.perf_counter()
            self._matrices_left[keys] = N_MATRICES
            jobs = [
                (int(k), m, stamp, int(g))
                for m in range(N_MATRICES)
                for k, g in zip(keys, self._generation[keys], strict=True)
            ]
            if self.method is not ReadMethod.WILLNEED:  # the workers read them
                queue.extend(jobs)
                self._lock.notify_all()
                return
        cpu = time.thread_time()  # WILLNEED: issued here and now (the module's docstring says why)
        for job in jobs:
            self._read(*job, None)
        self._add_cpu(time.thread_time() - cpu)

    def _hold_backlog(self) -> None:
        """Before reading more, evict here what the workers have not yet evicted, beyond
        `backlog_limit` keys: the reads must not outrun the evictions that make room for them.
        On 2 cores llama.cpp's threads can keep the eviction worker off both (OpenMP's workers
        spin between nodes): on the tiny test model with WILLNEED reads the queue grew to 3-9
        layers' evictions and resident bytes went 5-25% over the budget in about half the
        runs. The keys whose reads may still be landing (`_LANDING_S`) are not waited for."""
        if self._backlog_limit is None:
            return
        while True:
            with self._lock:
                if (
                    self._keys_to_evict <= self._backlog_limit
                    or not self._urgent
                    or self._urgent[0][0] != self._evict_queued
                ):
                    return
                job = self._urgent.popleft()
            self._run(job, None, None)

    def wait_for(
        self, keys: np.ndarray, matrices: tuple[int, ...] = ALL_MATRICES, timeout: float = 10.0
    ) -> tuple[float, bool]:
        """Block until `keys` are read (or dropped) and their `matrices` in RAM. Returns the
        seconds waited and whether they were there already when asked (the reads were in time)."""
        started = time.perf_counter()
        with self._read_finished:
            issued = not self._matrices_left[keys].any()
            if not issued:
                self._read_finished.wait_for(lambda: not self._matrices_left[keys].any(), timeout)
        waiting = self._missing(self._wanted_matrices(keys, matrices))
        in_time = issued and not waiting
        if waiting and self.method is ReadMethod.WILLNEED:  # issued: now wait for the pages themselves
            waiting = self._populate(waiting)
            while waiting:
                if time.perf_counter() - started > _WILLNEED_PATIENCE_S:
                    # The kernel dropped or has not served these: read them here.
                    buffer = memoryview(bytearray(self._buffer_bytes))
                    for key, matrix in waiting:
                        self._pread(key, matrix, buffer)
                    break
                time.sleep(_POLL_S)
                waiting = self._missing(waiting)
        return time.perf_counter() - started, in_time

    def _populate(self, matrices: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Fault `matrices` into llama.cpp's mapping, sleeping in the kernel until their reads
        in flight land (their pages stay locked until then) and reading what is not yet asked
        for; returns those it could not (a kernel without MADV_POPULATE_READ: polled instead).
        Polling mincore every 50 us until the pages arrived cost the CPU llama.cpp needs, and
        llama.cpp then still took a minor fault per page to map them."""
        if not self._can_populate:
            return matrices
        for i, (key, matrix) in enumerate(matrices):
            if not madvise(*self._touch_spans[key, matrix], MADV_POPULATE_READ):
                self._can_populate = False
                log.info("MADV_POPULATE_READ refused (kernel older than 5.14?); polling for reads instead")
                return matrices[i:]
        return []

    def in_flight(self, keys: np.ndarray, matrices: tuple[int, ...]) -> bool:
        """Whether one of `keys`' `matrices` is still to be read or not yet in RAM."""
        with self._lock:
            if self._matrices_left[keys].any():
                return True
        return bool(self._missing(self._wanted_matrices(keys, matrices)))

    def _wanted_matrices(self, keys: np.ndarray, matrices: tuple[int, ...]) -> list[tuple[int, int]]:
        """(key, matrix) for those of `keys` the cache still wants (the others may be evicted)."""
        return [(k, m) for k in keys.tolist() if self._wanted[k] for m in matrices]

    def _missing(self, matrices: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Those (key, matrix) with a page not in RAM (mincore over every page they touch)."""
        return [(k, m) for k, m in matrices if not all_resident(*self._touch_spans[k, m])]

    def bytes_read_for(self, keys: np.ndarray) -> int:
        """What the latest requests for `keys` read (a dropped or unfinished read counts 0)."""
        with self._lock:
            return int(self._key_bytes[keys].sum())

    def ensure(self, keys: np.ndarray) -> int:
        """Nothing to do: a page not read faults in from the file (DirectExpertIO must read it)."""
        return 0

    def pending(self, keys: np.ndarray) -> np.ndarray:
        """Those of `keys` whose reads have not finished."""
        with self._lock:
            return keys[self._matrices_left[keys] > 0]

    def evict(self, keys: np.ndarray) -> None:
        if len(keys):
            with self._lock:
                np.add.at(self.evictions_queued, keys, 1)
                self._keys_to_evict += len(keys)
            self._put_urgent((self._evict_queued, keys))

    def settle(self) -> None:
        """Nothing to do: evictions are the workers' (DirectExpertIO finishes its own here)."""

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
    def _issue_loop(self) -> None:
        """Evictions and calls first, then exact reads, then speculative ones."""
        buffer = memoryview(bytearray(self._buffer_bytes))
        while True:
            with self._lock:
                while not (self._urgent or self._exact or self._speculative or self._stopping or self._again_due()):
                    self._lock.wait(self._again[0][0] - time.perf_counter() if self._again else None)
                if self._stopping:
                    return
                if self._urgent:
                    job = self._urgent.popleft()
                elif self._again_due():
                    job = (self._evict_again, None)
                else:
                    job = None
                read = None if job else (self._exact or self._speculative).popleft()
            self._run(job, read, buffer)

    def _run(self, job, read, buffer: memoryview | None) -> None:
        """Run a call or eviction `job`, else `read`, its CPU counted; a failure is logged once
        and only costs speed (the compute faults the pages in)."""
        cpu = time.thread_time()
        try:
            if job is not None:
                fn, arg = job
                fn(arg) if arg is not None else fn()
            else:
                self._read(*read, buffer)
        except Exception:
            self.failures += 1
            if self.failures == 1:
                log.exception("expert I/O failed")
            if read is not None:
                self._finished(read[0], read[3], 0)
        self._add_cpu(time.thread_time() - cpu)

    def _useful(self, key: int, stamp: int, generation: int) -> bool:
        # Dropped when that layer has run (llama.cpp faulted the pages in itself), the key was
        # evicted meanwhile, or a newer request for it was made.
        return stamp >= self.current_stamp and self._wanted[key] and generation == self._generation[key]

    def _read(self, key: int, matrix: int, stamp: int, generation: int, buffer: memoryview) -> None:
        n = 0
        if self._useful(key, stamp, generation):
            if self.method is ReadMethod.WILLNEED:
                offset, nbytes = self._file_ranges[key, matrix]
                os.posix_fadvise(self._fd, int(offset), int(nbytes), os.POSIX_FADV_WILLNEED)
                n = int(nbytes)
            else:
                n = self._pread(key, matrix, buffer)
        self._finished(key, generation, n)

    def _pread(self, key: int, matrix: int, buffer: memoryview) -> int:
        offset, nbytes = self._file_ranges[key, matrix]
        return os.preadv(self._fd, [buffer[: int(nbytes)]], int(offset))

    def _finished(self, key: int, generation: int, nbytes: int) -> None:
        with self._lock:
            if generation != self._generation[key]:
                return  # a newer request for this key counts the matrices now
            self.counters.bytes_read += nbytes
            self._key_bytes[key] += nbytes
            self._matrices_left[key] -= 1
            if self._matrices_left[key] <= 0:
                self._matrices_left[key] = 0
                self.read_done_at[key] = time.perf_counter()
                self._outstanding -= 1
                if self._outstanding == 0:
                    self.counters.busy_s += self.read_done_at[key] - self._busy_since
                self._read_finished.notify_all()

    def _add_cpu(self, seconds: float) -> None:
        with self._lock:
            self.counters.cpu_s += seconds

    def _evict_queued(self, keys: np.ndarray) -> None:
        try:
            self.evict_now(keys)
        finally:  # a failed eviction must not hide these keys from the sweep for good
            with self._lock:
                np.subtract.at(self.evictions_queued, keys, 1)
                self._keys_to_evict -= len(keys)

    def _again_due(self) -> bool:
        return bool(self._again) and self._again[0][0] <= time.perf_counter()

    def _evict_again(self, now: float | None = None) -> None:
        """Evict once more the keys whose reads may have been in flight when they were evicted,
        unless wanted again since: those due by `now` (perf_counter's time; None: now)."""
        with self._lock:
            now = time.perf_counter() if now is None else now
            keys = []
            while self._again and self._again[0][0] <= now:
                keys.append(heapq.heappop(self._again)[1])
        due = np.array(keys, dtype=np.int64)
        try:
            self.evict_now(due[~self._wanted[due]], again=False)
        finally:
            with self._lock:
                np.subtract.at(self.evictions_queued, due, 1)

    def evict_now(self, keys: np.ndarray, *, again: bool = True) -> int:
        """Evict on the calling thread (the workers' own jobs, the manager's sweep); `again`:
        and once more later if a read may still be landing. Returns how many keys it evicted
        (all of them: their pages are advised out whatever mincore saw)."""
        if again:
            landing = self.read_done_at[keys] + _LANDING_S
            late = landing > time.perf_counter()
            if late.any():
                with self._lock:
                    np.add.at(self.evictions_queued, keys[late], 1)
                    for entry in zip(landing[late].tolist(), keys[late].tolist(), strict=True):
                        heapq.heappush(self._again, entry)
        for key in keys:
            spans = zip(self._evict_spans[key], self._evict_file_spans[key], strict=True)
            advice = self._pageout if self._shares_folios[key] else MADV_DONTNEED
            for (start, end), (file_start, file_end) in spans:
                if not madvise(int(start), int(end), advice) and advice == MADV_PAGEOUT:
                    log.info("MADV_PAGEOUT refused (kernel older than 5.4?); using MADV_DONTNEED")
                    self._pageout = MADV_DONTNEED
                    madvise(int(start), int(end), self._pageout)
                if file_end > file_start:
                    os.posix_fadvise(self._fd, int(file_start), int(file_end - file_start), os.POSIX_FADV_DONTNEED)
        return len(keys)
