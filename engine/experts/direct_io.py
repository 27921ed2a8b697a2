"""Reading experts with O_DIRECT asynchronous reads straight into their place in llama.cpp's mapping.

(Where every expert matrix is whole pages long, as in both SmallThinker models, the reads go
to positions instead, with no page-table change per read: PositionedExpertIO in positions.py,
built on this class's reads. This is then the fallback.)

The same interface as `ExpertIO` (engine/experts/io.py), another mechanism: at the start
every expert matrix's whole pages (its interior) are replaced by empty anonymous memory; a
read maps a slot of RAM there (engine/experts/slots.py) and asks the disk for the
matrix's bytes with Linux AIO (engine/experts/linux_aio.py), which returns at once; an
eviction leaves the slot where it is (loose) until a read moves its mapping to its own place
(`settle` bounds how many wait: see there), or maps empty memory back and keeps the slot
spare. Neither goes through the page cache, so a read costs 0.04-0.1 s of machine CPU per
GB against WILLNEED's 0.2-0.3 with its eviction (on 2 cores that CPU time is taken from
llama.cpp's compute), and no stray pages are left behind.

The price: an evicted expert reads as zeros, not as a page fault that fetches it. So
nothing may reach llama.cpp unread: `ensure` (called with llama.cpp's own choice of
experts, right before it uses them) reads whatever is missing on the spot, and if the
router hook fails altogether, `restore_file_mapping` puts the file back under every
expert (they then fault in as they would without the manager).

Reads and evictions run on the computing thread (they only issue syscalls); a worker runs
the manager's calls (its sweep). Speculative reads wait in a queue of ours, a little of it in
the kernel at a time (SPECULATIVE_IN_FLIGHT), so that exact reads reach the disk first. The
file's bytes at the edges of each matrix (pages it shares with a neighbour) stay file-backed
and are never evicted, as with ExpertIO.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time

import numpy as np

from engine.experts.io import ALL_MATRICES, N_MATRICES, IOCounters, ReadMethod
from engine.experts.linux_aio import AioContext
from engine.experts.page_control import PAGE
from engine.experts.slots import MAP_SHARED, PROT_READ, ExpertSlots, map_empty, map_fixed, move_mapping

log = logging.getLogger(__name__)

_MAX_IN_FLIGHT = 1024  # matrices; more wait for completions before they are submitted
# Speculative reads given to the kernel at a time (bytes); the rest wait in our queue (`_held`).
# The disk serves what it was given in order, so every byte of guesses ahead of an exact read
# delays it (at 1.7 GB/s, 1 ms a 1.7 MB): with all of them submitted at once, a layer's exact
# reads queued behind up to two layers of guesses. This keeps the disk busy between the hook's
# calls (several a layer: each takes in completions and feeds the queue) while an exact read
# waits behind no more than this.
# Measured (an Intel Xeon, 2 cores, 4B at 1 GiB, 192 tokens, lookahead 2, interleaved runs of a
# disk whose speed drifted): llama.cpp waited 16.6/17.4/20.9/22.5/32.2/23.0 ms a token with 1 MiB
# (median 21.7) against 22.1/26.3/23.0/23.2/41.3 with every guess submitted at once (23.2);
# half a MiB (one matrix at a time) waited 25.4/50.0, 2 MiB 34.0/24.2.
SPECULATIVE_IN_FLIGHT = 1 << 20


def direct_reads_work(path, probe_offset: int = 0) -> str | None:
    """Why O_DIRECT asynchronous reads of `path` cannot be used here, or None if they can
    (a filesystem may refuse O_DIRECT, a kernel AIO, a disk a page-sized read)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "memfd_create") or not hasattr(os, "O_DIRECT"):
        return "this system has no memfd or O_DIRECT"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        return f"the filesystem refuses O_DIRECT ({exc.strerror})"
    try:
        aio = AioContext(4)
        try:
            buffer = ctypes.create_string_buffer(2 * PAGE)
            address = -(-ctypes.addressof(buffer) // PAGE) * PAGE
            if aio.submit([(0, fd, address, PAGE, probe_offset // PAGE * PAGE)]) != 1:
                return "the kernel queued no asynchronous read"
            ((_, result),) = aio.reap(1)
            if result != PAGE:
                return f"a page-sized direct read returned {result}"
        finally:
            aio.close()
    except OSError as exc:
        return f"Linux AIO is unavailable ({exc})"
    finally:
        os.close(fd)
    return None


class DirectExpertIO:
    """`evict_spans[key]` [3, 2]: each matrix's interior in llama.cpp's mapping, and
    `evict_file_spans` the same as file offsets; `wanted`: the cache's residency."""

    def __init__(
        self, path, evict_spans: np.ndarray, evict_file_spans: np.ndarray, wanted: np.ndarray, *, spare_slots: int
    ) -> None:
        self._spans = evict_spans
        self._file_spans = evict_file_spans
        sizes = (evict_spans[:, :, 1] - evict_spans[:, :, 0]).astype(np.int64)  # 0: no whole page
        self._open(path, wanted, sizes)
        self._slots = ExpertSlots(len(sizes) * N_MATRICES, int(sizes.max()), spare_slots)
        # (key, matrix) evicted by `evict` -> its slot, still mapped at the key's place until a
        # read moves it (`_take_loose`) or `settle` maps empty memory there.
        self._loose: dict[tuple[int, int], int] = {}
        self._can_move = True
        self._landing: dict[int, int] = {}  # job -> slot of a key evicted while it was read
        for key, matrix in zip(*np.nonzero(sizes), strict=True):  # every expert starts evicted
            map_empty(int(evict_spans[key, matrix, 0]), int(sizes[key, matrix]))
        self._start_worker()

    def _open(self, path, wanted: np.ndarray, sizes: np.ndarray) -> None:
        """The file, the reads' bookkeeping; `sizes[key, matrix]`: the bytes a read of it counts."""
        self.method = ReadMethod.DIRECT
        self._path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        self._wanted = wanted
        n_keys = len(sizes)
        self._sizes = sizes
        self._aio = AioContext(_MAX_IN_FLIGHT)
        self._lock = threading.RLock()
        self._slot = np.full((n_keys, N_MATRICES), -1, dtype=np.int64)  # in place (or being read): where
        self._placed = np.zeros(n_keys, dtype=bool)  # every matrix of the key in place (or no whole page)
        self._jobs: dict[int, tuple[int, int]] = {}  # job -> key, matrix
        self._job_of: dict[tuple[int, int], int] = {}  # (key, matrix) -> its read in flight
        self._next_job = 0
        self._waiting: list[tuple[int, int, int, int, int]] = []  # reads the kernel's queue had no room for
        # Speculative reads not yet given to the kernel, oldest first (job -> read), and those
        # given, not landed (job -> bytes): see SPECULATIVE_IN_FLIGHT.
        self._held: dict[int, tuple[int, int, int, int, int]] = {}
        self._speculating: dict[int, int] = {}
        self._feeding = False
        self.evictions_queued = np.zeros(n_keys, dtype=np.int32)  # matrices let go of, not yet unmapped
        self.current_stamp = 0
        self.read_done_at = np.zeros(n_keys)
        self._matrices_left = np.zeros(n_keys, dtype=np.int64)
        self._ensured_at = np.full(n_keys, -1, dtype=np.int64)  # the access `ensure` read an unwanted key for
        self._key_bytes = np.zeros(n_keys, dtype=np.int64)
        self.counters = IOCounters()
        self.failures = 0
        self.restored = False

    def _start_worker(self) -> None:
        self._calls: list = []
        self._calls_ready = threading.Condition()
        self._stopping = False
        self._worker = threading.Thread(target=self._call_loop, name="expert-io", daemon=True)
        self._worker.start()

    placed_bytes = 0  # of the RAM outside llama.cpp's mapping, the experts' (none: they are in place)

    @property
    def unmapped_bytes(self) -> int:
        """RAM held outside llama.cpp's mapping: spare slots, and slots a read still lands in."""
        with self._lock:
            return self._slots.spare_bytes + len(self._landing) * self._slots.slot_bytes

    # --- reads (the computing thread) ------------------------------------------------------------
    partial_reads = True  # `read` can read some of a key's matrices (a guess's gate alone)

    def read(
        self, keys: np.ndarray, stamp: int = 0, *, speculative: bool = False, matrices: tuple[int, ...] = ALL_MATRICES
    ) -> None:
        """Start reading `matrices` of `keys` (those the cache still wants); returns at once.
        Reads are submitted here and now, so `stamp` (how long a queued read stays useful) plays
        no part. A key read in part is not in place: reading it again reads the rest."""
        if not len(keys) or self.restored:
            return
        cpu = time.thread_time()
        with self._lock:
            if speculative:
                self.counters.speculative_keys += len(keys)
            else:
                self.counters.exact_keys += len(keys)
            self._collect(0)
            reads = []
            keys = keys.tolist()
            for key in keys:
                if self._wanted[key]:
                    reads += self._start(key, matrices)
            reads = self._in_order_of_use(reads)
            if speculative:
                self._held.update((read[0], read) for read in reads)
                self._feed()
            else:
                self._submit(self._promoted(keys) + reads)
        self.counters.cpu_s += time.thread_time() - cpu

    def _promoted(self, keys: list[int], matrices: tuple[int, ...] = ALL_MATRICES) -> list:
        """The held speculative reads of `keys`' `matrices`, taken out of the queue: now exact."""
        if not self._held:
            return []
        jobs = [self._job_of.get((key, matrix)) for key in keys for matrix in matrices]
        return [self._held.pop(job) for job in jobs if job in self._held]

    def _feed(self) -> None:
        """Give the kernel the oldest held speculative reads while fewer than
        SPECULATIVE_IN_FLIGHT bytes of them are in flight."""
        if self._feeding:  # (submitting may take in completions, which feed)
            return
        self._feeding = True
        try:
            reads = []
            while self._held and sum(self._speculating.values()) < SPECULATIVE_IN_FLIGHT:  # (a few)
                job = next(iter(self._held))
                read = self._held.pop(job)
                self._speculating[job] = read[3]
                reads.append(read)
            self._submit(reads)
        finally:
            self._feeding = False

    def _drop_held(self, job: int) -> bool:
        """Forget a held read of an expert let go of (the disk never reads it); whether it was held."""
        read = self._held.pop(job, None)
        if read is None:
            return False
        key, matrix = self._jobs.pop(job)
        self._key_bytes[key] -= int(self._sizes[key, matrix])
        self.counters.held_dropped += 1
        return True

    def _in_order_of_use(self, reads: list) -> list:
        """Every key's gate matrix first, then the ups, then the downs: the order llama.cpp
        uses them in, so the first product can start while the later matrices still land."""
        return sorted(reads, key=lambda read: self._jobs[read[0]][1])

    def _start(self, key: int, matrices: tuple[int, ...] = ALL_MATRICES) -> list[tuple[int, int, int, int, int]]:
        """Map slots for `key`'s `matrices` not yet in place; their reads, to submit."""
        reads = []
        if (self._slot[key] < 0).all():  # a fresh read of the key (not the rest of a partial one)
            self._key_bytes[key] = 0
        for matrix in matrices:
            nbytes = int(self._sizes[key, matrix])
            if not nbytes or self._slot[key, matrix] >= 0:
                continue  # no whole page, or in place already (read, or being read)
            address = int(self._spans[key, matrix, 0])
            slot = self._loose.pop((key, matrix), None)
            if slot is not None:  # its own slot, still mapped here: read into it again
                self.evictions_queued[key] -= 1
            else:
                slot = self._take_loose(address, nbytes)
                if slot is None:
                    slot = self._slots.place(address, nbytes)
            reads.append(self._new_read(key, matrix, slot, address, nbytes, int(self._file_spans[key, matrix, 0])))
        self._placed[key] = matrices == ALL_MATRICES or bool(((self._slot[key] >= 0) | (self._sizes[key] == 0)).all())
        return reads

    def _new_read(self, key: int, matrix: int, slot: int, address: int, nbytes: int, offset: int) -> tuple:
        """`key`'s `matrix` is read into `slot` (`nbytes` of the file from `offset`, to
        `address`): its job, and the read to submit."""
        self._slot[key, matrix] = slot
        job = self._next_job
        self._next_job += 1
        self._jobs[job] = (key, matrix)
        self._job_of[key, matrix] = job
        self._matrices_left[key] += 1
        # Counted now: the disk reads it even if the key is let go of before it lands (a
        # wrong guess whose target layer has run, counted as wasted then).
        self._key_bytes[key] += int(self._sizes[key, matrix])
        return job, self._fd, address, nbytes, offset

    def _take_loose(self, address: int, nbytes: int) -> int | None:
        """Move an evicted matrix's slot of the same size to `address` (empty memory goes back
        where it was); its slot, or None if there is none or the kernel cannot move it."""
        if not self._can_move:
            return None
        same_size = next((loose for loose in self._loose if self._sizes[loose] == nbytes), None)
        if same_size is None:
            return None
        key, matrix = same_size
        slot = self._loose.pop(same_size)
        old = int(self._spans[key, matrix, 0])
        if move_mapping(old, address, nbytes):
            self.evictions_queued[key] -= 1
            map_empty(old, nbytes)
            return slot
        self._can_move = False
        log.info("this kernel cannot move expert slots (MREMAP_DONTUNMAP): they are unmapped and mapped again")
        self._unmap_loose(key, matrix, slot)
        return None

    def _submit(self, reads: list) -> None:
        self._waiting += reads
        while self._waiting:
            taken = self._aio.submit(self._waiting)
            del self._waiting[:taken]
            if self._waiting:  # the kernel's queue is full
                self._collect(1)

    def _collect(self, at_least: int) -> None:
        """Take in finished reads (waiting for `at_least`)."""
        now = time.perf_counter()
        if at_least and self._held and self._aio.in_flight < at_least:
            self._feed()  # (nothing else might land)
        reaped = self._aio.reap(at_least)
        for job, result in reaped:
            self._speculating.pop(job, None)
            key, matrix = self._jobs.pop(job)
            # The matrix's bytes (PositionedExpertIO reads a page either side of them too).
            counted = min(max(0, result), int(self._sizes[key, matrix]))
            landed_in = self._landing.pop(job, None)
            if landed_in is not None:  # its key was evicted meanwhile: the memory is free now
                self._landed_after_eviction(landed_in)
                self.counters.bytes_read += counted  # (read all the same)
                continue
            del self._job_of[key, matrix]
            if not self._read_complete(key, matrix, result):  # a failed or short read: read it here, the slow way
                self.failures += 1
                if self.failures == 1:
                    log.warning("a direct read of an expert returned %s; reading it with pread", result)
                counted = self._read_buffered(key, matrix)
            self.counters.bytes_read += counted
            self._matrices_left[key] -= 1
            if self._matrices_left[key] == 0:
                self.read_done_at[key] = now
        if reaped and self._held:
            self._feed()

    def _landed_after_eviction(self, slot: int) -> None:
        self._slots.release(slot)

    def _read_complete(self, key: int, matrix: int, result: int) -> bool:
        return result == self._sizes[key, matrix]

    def _read_buffered(self, key: int, matrix: int) -> int:
        nbytes = int(self._sizes[key, matrix])
        target = (ctypes.c_char * nbytes).from_address(int(self._spans[key, matrix, 0]))
        with open(self._path, "rb", buffering=0) as f:
            return os.preadv(f.fileno(), [memoryview(target).cast("B")], int(self._file_spans[key, matrix, 0]))

    def wait_for(self, keys: np.ndarray, matrices: tuple[int, ...] = ALL_MATRICES) -> tuple[float, bool]:
        """Block until the reads of `keys`' `matrices` have landed. Returns the seconds waited
        and whether they had landed already (the reads were in time)."""
        started = time.perf_counter()
        with self._lock:
            self._submit(self._promoted(keys.tolist(), matrices))
            self._collect(0)
            in_time = not self._in_flight(keys, matrices)
            while self._in_flight(keys, matrices):
                self._collect(1)
        return time.perf_counter() - started, in_time

    def in_flight(self, keys: np.ndarray, matrices: tuple[int, ...]) -> bool:
        """Whether a read of one of `keys`' `matrices` has not landed yet."""
        with self._lock:
            self._collect(0)
            return self._in_flight(keys, matrices)

    def _in_flight(self, keys: np.ndarray, matrices: tuple[int, ...]) -> bool:
        job_of = self._job_of
        return any((key, matrix) in job_of for key in keys.tolist() for matrix in matrices)

    def ensure(self, keys: np.ndarray) -> int:
        """Make sure every matrix of `keys` is in place or being read, starting the reads of
        what is not (llama.cpp is about to use them: the caller then waits for each matrix
        with `wait_for` before its use); returns how many keys had to be read."""
        with self._lock:
            if self.restored:
                return 0
            # Python over a few keys: numpy calls here cost tens of microseconds a layer.
            placed, wanted = self._placed, self._wanted
            keys = keys.tolist()
            missing = [key for key in keys if not placed[key]]
            reads = self._promoted(keys)
            if missing:
                for key in missing:
                    reads += self._start(key)
            self._submit(self._in_order_of_use(reads))
            # Not the cache's: a sweep would evict them as strays, even while the layer uses them.
            for key in keys:
                if not wanted[key]:
                    self._ensured_at[key] = self.current_stamp
            return len(missing)

    def pending(self, keys: np.ndarray) -> np.ndarray:
        """Those of `keys` whose reads have not finished, or were read in part."""
        with self._lock:
            return keys[(self._matrices_left[keys] > 0) | ~self._placed[keys]]

    def bytes_read_for(self, keys: np.ndarray) -> int:
        with self._lock:
            return int(self._key_bytes[keys].sum())

    # --- evictions -----------------------------------------------------------------------------------
    def evict(self, keys: np.ndarray) -> None:
        """Let `keys` that the cache no longer wants go. Their slots stay mapped where they are
        (the key is no longer in place: `ensure` reads it again before any use) until the next
        reads take them over or `settle` unmaps them (beyond the spares' allowance): a read that
        takes one moves its mapping, a fraction of the cost of unmapping its pages and mapping
        them again."""
        cpu = time.thread_time()
        with self._lock:
            if self.restored:
                return
            for key in np.asarray(keys).tolist():
                if self._wanted[key] or self._ensured_at[key] == self.current_stamp:
                    continue
                if not self._can_move or self._matrices_left[key]:  # (the disk may still write there)
                    self._unmap(key)
                    continue
                for matrix in range(N_MATRICES):
                    slot = int(self._slot[key, matrix])
                    if slot >= 0:
                        self._loose[key, matrix] = slot
                        self._slot[key, matrix] = -1
                        self.evictions_queued[key] += 1  # (not a stray for the sweep meanwhile)
                self._placed[key] = False
            self.counters.cpu_s += time.thread_time() - cpu

    def settle(self) -> None:
        """Hold no more RAM outside the cache's experts than the spare slots' allowance: evicted
        slots no read took over stay where they are (loose) within it, the oldest beyond it get
        empty memory and are freed, and spare slots go first.

        Why loose before spare: a later read moves a loose slot (mremap, 25-110 us) where a spare
        one must be mapped anew (MAP_POPULATE, about 100 us) after its place was unmapped (about
        100 us). Unmapping every loose slot after each layer did that for 61 slots a token on
        the 4B at 1 GiB (an AMD EPYC: a guess's gate-only read takes one of an evicted expert's
        three slots; the confirmation's up and down took spare ones)."""
        allowance = self._slots.spare_limit
        if len(self._loose) + self._slots.n_spare <= allowance:
            return
        cpu = time.thread_time()
        with self._lock:
            self._slots.free_spares(allowance - len(self._loose))
            for key, matrix in list(self._loose)[: max(0, len(self._loose) - allowance)]:  # the oldest
                self._unmap_loose(key, matrix, self._loose.pop((key, matrix)), keep=False)
            self.counters.cpu_s += time.thread_time() - cpu

    def _unmap_loose(self, key: int, matrix: int, slot: int, *, keep: bool = True) -> None:
        """Empty memory under an evicted matrix whose slot stayed mapped there; the slot is free
        (spare if `keep` and there is room)."""
        map_empty(int(self._spans[key, matrix, 0]), int(self._sizes[key, matrix]))
        self._slots.release(slot, keep=keep)
        self.evictions_queued[key] -= 1

    def evict_now(self, keys: np.ndarray, *, again: bool = True) -> int:
        """Put empty memory back under `keys` that the cache no longer wants; returns how many
        held a slot. Pages mincore saw under a key with no slot were there only while the sweep
        looked (it runs beside the reads, which move slots and empty their old places): nothing
        to evict, and the sweep need not come back sooner."""
        cpu = time.thread_time()
        evicted = 0
        with self._lock:
            if self.restored:
                return 0
            for key in np.asarray(keys).tolist():
                in_use = self._wanted[key] or self._ensured_at[key] == self.current_stamp
                if not in_use and (self._slot[key] >= 0).any():
                    self._unmap(key)
                    evicted += 1
            self.counters.cpu_s += time.thread_time() - cpu
        return evicted

    def _unmap(self, key: int) -> None:
        """Map empty memory under `key`'s matrices now (their slots are freed once no read lands in them)."""
        for matrix in np.flatnonzero(self._slot[key] >= 0).tolist():
            slot = int(self._slot[key, matrix])
            map_empty(int(self._spans[key, matrix, 0]), int(self._sizes[key, matrix]))
            self._slot[key, matrix] = -1
            job = self._job_of.pop((key, matrix), None)
            if job is not None and not self._drop_held(job):  # the disk still writes into the slot's pages
                self._landing[job] = slot
            else:
                self._slots.release(slot)
        self._matrices_left[key] = 0
        self._placed[key] = False

    def restore_file_mapping(self) -> None:
        """Map the file back under every expert and stop managing them: from here on a
        page llama.cpp touches faults in from the file, whatever the manager knew."""
        with self._lock:
            with open(self._path, "rb") as f:
                for key, matrix in zip(*np.nonzero(self._sizes), strict=True):
                    address, size = int(self._spans[key, matrix, 0]), int(self._sizes[key, matrix])
                    map_fixed(address, size, PROT_READ, MAP_SHARED, f.fileno(), int(self._file_spans[key, matrix, 0]))
            self._loose.clear()  # (their slots were mapped over with the file: nothing left to do)
            self._held.clear()  # (never to be read)
            self.restored = True
            log.warning("expert reads stopped: the model's experts are read from the file on demand")

    # --- calls on the worker -------------------------------------------------------------------------
    def call(self, fn) -> None:
        with self._calls_ready:
            self._calls.append(fn)
            self._calls_ready.notify()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        done = threading.Event()
        self.call(done.set)
        return done.wait(timeout)

    def _call_loop(self) -> None:
        while True:
            with self._calls_ready:
                while not (self._calls or self._stopping):
                    self._calls_ready.wait()
                if self._stopping:
                    return
                fn = self._calls.pop(0)
            try:
                fn()
            except Exception:  # a failed sweep only costs accuracy of the figures
                self.failures += 1
                log.exception("an expert I/O call failed")

    def close(self) -> None:
        with self._calls_ready:
            self._stopping = True
            self._calls_ready.notify()
        self._worker.join(timeout=30)
        with self._lock:
            self._aio.close()  # waits for reads in flight: the disk must not write into freed pages
            os.close(self._fd)
            self._free_memory()

    def _free_memory(self) -> None:
        self._slots.close()
