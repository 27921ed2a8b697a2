"""The direct reads' system calls: made by a thread of their own (map_queue.c), or right away.

DirectExpertIO decides which slot goes where and which job reads what; an object here makes
the calls. `QueuedCalls` hands them, in order, to a C thread that makes them on the other
core while the computing thread goes on with the router hook (see map_queue.c for why);
`ImmediateCalls` makes them on the spot (where the compiled part is missing). Both take the
same calls: `map_slot`, `map_empty`, `move`, `punch`, `read`, then `flush` (queued calls
start only then: one wake-up per batch).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import time
from pathlib import Path

import numpy as np

from engine.experts.linux_aio import AioContext
from engine.experts.slots import free_range, map_empty, map_slot, move_mapping

log = logging.getLogger(__name__)

_MAP_SLOT, _MAP_EMPTY, _MOVE, _PUNCH, _READ = range(5)
_KIND_NAMES = {
    _MAP_SLOT: "mapping a slot",
    _MAP_EMPTY: "mapping empty memory",
    _MOVE: "moving a slot",
    _PUNCH: "freeing a slot",
    _READ: "reading",
}


def compiled_library() -> ctypes.CDLL | None:
    """map_queue.c as built next to this file (setuptools names it like an extension module)."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(__file__).with_name("_map_queue" + suffix)
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            lib.mq_open.restype = ctypes.c_void_p
            lib.mq_open.argtypes = [ctypes.c_uint64]
            lib.mq_status.restype = ctypes.c_void_p
            lib.mq_status.argtypes = [ctypes.c_void_p]
            lib.mq_push.restype = ctypes.c_int
            lib.mq_push.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            lib.mq_drain.argtypes = [ctypes.c_void_p]
            lib.mq_error.restype = ctypes.c_int
            lib.mq_error.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
            lib.mq_take_failed.restype = ctypes.c_size_t
            lib.mq_take_failed.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            lib.mq_close.argtypes = [ctypes.c_void_p]
            return lib
    return None


class ImmediateCalls:
    """The calls made on the calling thread, as they come."""

    queued = False

    def __init__(self, aio: AioContext) -> None:
        self._aio = aio
        self._reads: list[tuple[int, int, int, int, int]] = []
        self._failed: list[tuple[int, int]] = []

    def map_slot(self, address: int, nbytes: int, fd: int, offset: int) -> None:
        map_slot(address, nbytes, fd, offset)

    def map_empty(self, address: int, nbytes: int) -> None:
        map_empty(address, nbytes)

    def move(self, old: int, new: int, nbytes: int) -> bool:
        """Move a slot's mapping (see slots.move_mapping) and empty its old place; False where
        the kernel cannot move it (nothing was done)."""
        if not move_mapping(old, new, nbytes):
            return False
        map_empty(old, nbytes)
        return True

    def punch(self, fd: int, offset: int, nbytes: int) -> None:
        free_range(fd, offset, nbytes)

    def read(self, job: int, fd: int, address: int, nbytes: int, offset: int) -> None:
        self._reads.append((job, fd, address, nbytes, offset))

    def flush(self) -> None:
        """Submit the reads (the caller keeps the kernel's queue from filling, so a read it
        still refuses after a few tries is reported as failed: read the slow way then)."""
        for _ in range(100):
            if not self._reads:
                return
            del self._reads[: self._aio.submit(self._reads)]
            time.sleep(0.0001)
        self._failed += [(read[0], -11) for read in self._reads]
        self._aio.in_flight += len(self._reads)  # (forgotten again as they are taken)
        self._reads.clear()

    def drain(self) -> None:
        pass

    def new_cpu_s(self) -> float:
        return 0.0  # (the calls ran on the caller's thread, which times them)

    def check(self) -> None:
        pass

    def take_failed(self) -> list[tuple[int, int]]:
        failed, self._failed = self._failed, []
        return failed

    def close(self) -> None:
        pass


class QueuedCalls:
    """The calls made in order by map_queue.c's thread; reads counted in flight once queued."""

    queued = True

    def __init__(self, lib: ctypes.CDLL, aio: AioContext) -> None:
        self._lib, self._aio = lib, aio
        self._queue = lib.mq_open(aio.context_id)
        if not self._queue:
            raise OSError("could not start the thread for expert reads")
        # [errno of a failed call, failed reads waiting, the thread's CPU ns], read without a call
        self._status = (ctypes.c_int64 * 3).from_address(lib.mq_status(self._queue))
        self._cpu_ns_counted = 0
        self._ops: list[tuple[int, int, int, int, int, int]] = []
        self._failed_buffer = np.zeros(2 * 256, dtype=np.int64)

    def map_slot(self, address: int, nbytes: int, fd: int, offset: int) -> None:
        self._ops.append((_MAP_SLOT, address, nbytes, fd, offset, 0))

    def map_empty(self, address: int, nbytes: int) -> None:
        self._ops.append((_MAP_EMPTY, address, nbytes, 0, 0, 0))

    def move(self, old: int, new: int, nbytes: int) -> bool:
        self._ops.append((_MOVE, old, new, nbytes, 0, 0))
        return True  # (the caller checked that this kernel moves slots: slots.moves_work)

    def punch(self, fd: int, offset: int, nbytes: int) -> None:
        self._ops.append((_PUNCH, fd, offset, nbytes, 0, 0))

    def read(self, job: int, fd: int, address: int, nbytes: int, offset: int) -> None:
        self._ops.append((_READ, job, fd, address, nbytes, offset))
        self._aio.in_flight += 1  # reaped like any other read once the thread submitted it

    def flush(self) -> None:
        if not self._ops:
            return
        ops = np.array(self._ops, dtype=np.int64)
        self._ops.clear()
        if self._lib.mq_push(self._queue, ops.ctypes.data, len(ops)):
            raise MemoryError("no memory to queue expert reads")

    def drain(self) -> None:
        """Wait until every call handed over has been made."""
        self.flush()
        self._lib.mq_drain(self._queue)

    def new_cpu_s(self) -> float:
        """CPU time the thread making the calls used since the last time this was asked."""
        cpu_ns = self._status[2]
        new, self._cpu_ns_counted = cpu_ns - self._cpu_ns_counted, cpu_ns
        return new / 1e9

    def check(self) -> None:
        """Raise the error of a mapping call that failed (the queue stopped there)."""
        if not self._status[0]:
            return
        kind = ctypes.c_int64(0)
        errno = self._lib.mq_error(self._queue, ctypes.byref(kind))
        if errno:
            raise OSError(errno, f"{_KIND_NAMES.get(kind.value, 'a call')} for an expert read failed")

    def take_failed(self) -> list[tuple[int, int]]:
        """Reads the kernel refused (or dropped after an error), as (job, -errno)."""
        if not self._status[1]:
            return []
        buffer = self._failed_buffer
        taken = []
        while n := self._lib.mq_take_failed(self._queue, buffer.ctypes.data, len(buffer) // 2):
            taken += [(int(job), int(result)) for job, result in buffer[: 2 * n].reshape(n, 2)]
        return taken

    def close(self) -> None:
        if self._queue:
            self.flush()
            self._lib.mq_close(self._queue)
            self._queue = None


def open_calls(aio: AioContext, *, queued: bool = True) -> ImmediateCalls | QueuedCalls:
    """Queued where map_queue.c was built and `queued`, else immediate."""
    lib = compiled_library() if queued else None
    if lib is None:
        if queued:
            log.info("the compiled map queue is missing: expert reads' calls run on the computing thread")
        return ImmediateCalls(aio)
    return QueuedCalls(lib, aio)
