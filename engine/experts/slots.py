"""RAM for the experts read with O_DIRECT: slots of one memfd, mapped in place into llama.cpp's mapping.

An O_DIRECT read needs memory that is already there: into pages it must first fault in
(allocate and zero), it cost 0.6-1.2 s of CPU per GB here, 15-30 times the read itself. So
the memory is allocated once and reused: each slot holds one expert matrix's whole pages
(its "interior": the pages only that matrix touches), and mapping a slot over the matrix's
interior (MAP_FIXED, shared) puts the pages there without copying or zeroing. Evicting maps
an empty anonymous range back (a read of it would see zeros, which is why the manager
makes sure a layer's experts are read before llama.cpp uses them) and keeps the slot for
the next read; where a read follows at once, the evicted slot's mapping is moved to the
read's place instead (`move_mapping`), page table entries and all. Slots beyond a few
spare ones are given back to the system (FALLOC_FL_PUNCH_HOLE), so the RAM held is the
experts in place plus those spares.
"""

from __future__ import annotations

import ctypes
import os
import sys

from engine.experts.page_control import PAGE

# Linux only (memfd, fallocate); elsewhere direct reads are never chosen (direct_reads_work).
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
if _libc is not None:
    _libc.mmap.restype = ctypes.c_void_p
    _libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    _libc.mremap.restype = ctypes.c_void_p
    _libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
PROT_READ, PROT_WRITE = 1, 2
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE, MAP_POPULATE = 0x01, 0x02, 0x10, 0x20, 0x4000, 0x8000
MAP_FAILED = ctypes.c_void_p(-1).value
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def map_fixed(address: int, nbytes: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> None:
    """mmap at exactly `address`, replacing what was mapped there."""
    got = _libc.mmap(address, nbytes, prot, flags | MAP_FIXED, fd, offset)
    if got != address:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mmap at {address:#x}: {os.strerror(errno)}")


def move_mapping(old: int, new: int, nbytes: int) -> bool:
    """Move the mapping at `old` (its pages with it) to `new`, replacing what was mapped there;
    `old` keeps a mapping of the same memory without its pages (MREMAP_DONTUNMAP, so there is
    never a hole in llama.cpp's mapping). False where the kernel cannot (before Linux 5.13).

    About 6 us for 160 pages (an expert matrix of the 4B has 161 whole ones), against about 25
    for unmapping them and 20 for mapping them again (MAP_POPULATE) elsewhere, measured alone:
    the page table entries move as they are."""
    got = _libc.mremap(old, nbytes, nbytes, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, new)
    if got == new:
        return True
    errno = ctypes.get_errno()
    if errno == 22:  # EINVAL: this kernel has no MREMAP_DONTUNMAP for shared mappings
        return False
    raise OSError(errno, f"mremap {old:#x} -> {new:#x}: {os.strerror(errno)}")


def reserve(nbytes: int) -> int:
    """Private anonymous memory of `nbytes`, reserved but not allocated (MAP_NORESERVE: pages
    come on first touch, or MADV_POPULATE_WRITE); its address."""
    got = _libc.mmap(None, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if got in (None, MAP_FAILED):
        errno = ctypes.get_errno()
        raise OSError(errno, f"reserving {nbytes} bytes: {os.strerror(errno)}")
    return got


def unreserve(address: int, nbytes: int) -> None:
    _libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(nbytes))


def map_empty(address: int, nbytes: int) -> None:
    """Read-only anonymous memory at [address, address + nbytes): nothing resident."""
    map_fixed(address, nbytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)


class ExpertSlots:
    """`n_slots` slots of `slot_bytes` (whole pages) in one memfd, allocated on first use."""

    def __init__(self, n_slots: int, slot_bytes: int, spare_limit: int) -> None:
        self.slot_bytes = -(-slot_bytes // PAGE) * PAGE
        self._fd = os.memfd_create("smallthinker-experts", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, n_slots * self.slot_bytes)  # sparse: nothing allocated yet
        self._spare: list[int] = []  # slots with pages allocated, mapped nowhere
        self._empty = list(range(n_slots - 1, -1, -1))  # slots with no pages
        self.spare_limit = spare_limit
        self.held = 0  # slots out: mapped in place, or waiting for a read to land

    @property
    def spare_bytes(self) -> int:
        return len(self._spare) * self.slot_bytes

    def place(self, address: int, nbytes: int) -> int:
        """Map a slot's first `nbytes` at `address`, writable (the read's target); returns the slot."""
        slot = self._spare.pop() if self._spare else self._empty.pop()
        map_fixed(address, nbytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, self._fd, slot * self.slot_bytes)
        self.held += 1
        return slot

    @property
    def n_spare(self) -> int:
        return len(self._spare)

    def release(self, slot: int, *, keep: bool = True) -> None:
        """`slot` is mapped nowhere any more (its range was remapped): keep it spare (if `keep`
        and there is room), or free it."""
        self.held -= 1
        if keep and len(self._spare) < self.spare_limit:
            self._spare.append(slot)
            return
        self._free(slot)

    def free_spares(self, keep: int) -> None:
        """Free spare slots beyond `keep` of them."""
        while len(self._spare) > max(0, keep):
            self._free(self._spare.pop())

    def _free(self, slot: int) -> None:
        punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        if _libc.fallocate(self._fd, punch, slot * self.slot_bytes, self.slot_bytes):
            errno = ctypes.get_errno()
            raise OSError(errno, f"freeing an expert slot: {os.strerror(errno)}")
        self._empty.append(slot)

    def close(self) -> None:
        os.close(self._fd)  # pages still mapped stay until unmapped
