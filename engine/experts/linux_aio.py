"""Linux native asynchronous I/O (io_setup, io_submit, io_getevents) through raw syscalls.

With O_DIRECT the kernel reads straight from the disk into the caller's memory (DMA), with
no page cache in between and no thread waiting: cold random reads of the 4B's expert
matrices (648 KiB, 2 cores, bench/read_methods.py) ran at 1.6-2.1 GB/s for 0.04-0.1 s of
machine CPU per GB into memory already allocated, against 1.4-2.7 GB/s and 0.16-0.3 s per GB
for posix_fadvise(WILLNEED) into the page cache (its eviction costs about 0.1 more), and
0.6-1.2 s per GB when the target pages must first be faulted in. io_uring
would do the same with a ring to manage; the three syscalls here need no library.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

# (io_setup, io_destroy, io_submit, io_getevents) by machine; the iocb layout below is the
# little-endian one, which both share.
_SYSCALLS = {"x86_64": (206, 207, 209, 208), "aarch64": (0, 1, 2, 4), "arm64": (0, 1, 2, 4)}
_IOCB_CMD_PREAD = 0
_EAGAIN = 11
# The context's id is the address of its completion ring, mapped into the process (fs/aio.c,
# struct aio_ring: id, nr, head, tail, magic, ...); libaio reads it the same way.
_AIO_RING_MAGIC = 0xA10A10A1


class _IOCB(ctypes.Structure):
    """struct iocb (linux/aio_abi.h), little-endian."""

    _fields_ = [
        ("data", ctypes.c_uint64),
        ("key", ctypes.c_uint32),
        ("rw_flags", ctypes.c_int32),
        ("opcode", ctypes.c_uint16),
        ("reqprio", ctypes.c_int16),
        ("fildes", ctypes.c_uint32),
        ("buf", ctypes.c_uint64),
        ("nbytes", ctypes.c_uint64),
        ("offset", ctypes.c_int64),
        ("reserved2", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("resfd", ctypes.c_uint32),
    ]


class _Event(ctypes.Structure):
    """struct io_event: `data` as submitted, `res` the bytes read or -errno."""

    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64), ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


def _libc():
    if not sys.platform.startswith("linux") or platform.machine() not in _SYSCALLS:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


class AioContext:
    """Reads submitted in batches; completions reaped as (data, result) pairs."""

    def __init__(self, max_events: int = 1024) -> None:
        self._libc = _libc()
        if self._libc is None:
            raise OSError(f"Linux native AIO is not supported here ({sys.platform}, {platform.machine()})")
        self._setup, self._destroy, self._submit, self._getevents = _SYSCALLS[platform.machine()]
        self._ctx = ctypes.c_ulong(0)
        if self._libc.syscall(self._setup, max_events, ctypes.byref(self._ctx)) != 0:
            raise OSError(ctypes.get_errno(), "io_setup: " + os.strerror(ctypes.get_errno()))
        self._events = (_Event * max_events)()
        self.max_events = max_events
        self.in_flight = 0
        # The ring's head and tail: equal when no completion waits. Asking without waiting is
        # a system call (the router hook asks several times a layer, 5-10 us each in this VM)
        # that is then skipped.
        ring = (ctypes.c_uint32 * 5).from_address(self._ctx.value)
        self._ring = ring if ring[4] == _AIO_RING_MAGIC else None

    def submit(self, reads: list[tuple[int, int, int, int, int]]) -> int:
        """Start reads of (data, fd, address, nbytes, file offset); returns how many the kernel
        took (fewer when its queue is full: reap some, then submit the rest)."""
        iocbs = [
            _IOCB(data=d, opcode=_IOCB_CMD_PREAD, fildes=fd, buf=a, nbytes=n, offset=o) for d, fd, a, n, o in reads
        ]
        done = 0
        while done < len(iocbs):
            batch = (ctypes.POINTER(_IOCB) * (len(iocbs) - done))(*map(ctypes.pointer, iocbs[done:]))
            n = self._libc.syscall(self._submit, self._ctx, len(iocbs) - done, batch)
            if n < 0:
                errno = ctypes.get_errno()
                if errno == _EAGAIN:
                    break
                raise OSError(errno, "io_submit: " + os.strerror(errno))
            done += n
            self.in_flight += n
        return done

    def reap(self, min_done: int = 0) -> list[tuple[int, int]]:
        """Completed reads as (data, bytes read or -errno); waits for at least `min_done`."""
        if not self.in_flight:
            return []
        ring = self._ring
        if not min_done and ring is not None and ring[2] == ring[3]:
            return []  # nothing completed (a completion seen a moment later is taken next time)
        min_done = min(min_done, self.in_flight)
        while True:
            got = self._libc.syscall(self._getevents, self._ctx, min_done, self.max_events, self._events, None)
            if got >= 0:
                break
            if ctypes.get_errno() != 4:  # EINTR: a signal arrived; ask again
                raise OSError(ctypes.get_errno(), "io_getevents")
        self.in_flight -= got
        return [(int(self._events[i].data), int(self._events[i].res)) for i in range(got)]

    def close(self) -> None:
        """Waits for the reads in flight (their target pages are pinned until then)."""
        while self.in_flight:
            self.reap(self.in_flight)
        if self._ctx.value:
            self._ring = None  # (unmapped by io_destroy)
            self._libc.syscall(self._destroy, self._ctx)
            self._ctx = ctypes.c_ulong(0)
