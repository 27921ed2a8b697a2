"""Experts read in place at positions in memory of our own; llama.cpp's expert ids rewritten to them.

DirectExpertIO maps RAM under each expert matrix's own place in llama.cpp's mapping, and
moves it (mremap) from an evicted matrix to the next read's: each move changes page tables,
and every such change makes the kernel flush the translation caches of the other core, where
llama.cpp's second thread spins: 45-55 us a move beside a computing thread against 4 alone
(bench/page_table_moves.py), 182 moves a token on the 4B at 1 GiB.

Here the router hook points every layer's three expert tensors (once, before the first
token: `RouterHook.point_expert_tensors`) at one pool of positions in memory of ours, each
position a block holding one expert's gate, up and down matrices side by side: a tensor's
data is the pool's first block (at that matrix's place in it), its stride (nb[2]) the block,
its expert count (ne[2]) the pool's positions. An expert of any layer is read with O_DIRECT
into any free position: into pages already there, so the read changes no page table. Once
llama.cpp has taken the weights of the layer's chosen experts (`ffn_moe_weights-N`, a
get_rows of the probabilities by expert id), the hook rewrites the ids to the experts'
positions, which the three expert products then use. Free positions keep their pages up to a
spare allowance; beyond it the oldest give them back (MADV_DONTNEED), and a read with no
free populated position populates a fresh one.

A matrix's place in the file is rarely page-aligned (GGUF aligns tensors to 32 bytes), and
O_DIRECT reads whole pages to a page-aligned address: each matrix's span in a block is a page
longer than the matrix, its data starting at the file's page phase for its layer, so the
read's first and last partial pages land in the span and never on a neighbour. So this needs
every expert matrix to be whole pages long (true of both SmallThinker models' Q4_0 files;
`positions_fit`), every expert of a tensor then having the same phase.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections import OrderedDict

import numpy as np

from engine.experts.direct_io import DirectExpertIO
from engine.experts.io import ALL_MATRICES, N_MATRICES
from engine.experts.map import ExpertMap
from engine.experts.page_control import MADV_DONTNEED, MADV_NOHUGEPAGE, MADV_POPULATE_WRITE, PAGE, madvise
from engine.experts.slots import MAP_SHARED, PROT_READ, map_empty, map_fixed, reserve, unreserve

log = logging.getLogger(__name__)

_FREE, _LANDING = -1, -2  # a position's expert when it holds none; and while a read still lands in it


def positions_fit(experts: ExpertMap) -> bool:
    """Whether every expert matrix is whole pages long and the same size in every layer."""
    sizes = experts.matrix_bytes
    return bool((sizes % PAGE == 0).all() and (sizes == sizes[0]).all())


class PositionedExpertIO(DirectExpertIO):
    """DirectExpertIO's reads, into pool positions. `mapping_spans[key]` [3, 2]: each matrix's
    whole pages in llama.cpp's mapping, and `mapping_file_spans` the same as file offsets."""

    def __init__(
        self,
        path,
        experts: ExpertMap,
        mapping_spans: np.ndarray,
        mapping_file_spans: np.ndarray,
        wanted: np.ndarray,
        *,
        spare: int,
    ) -> None:
        n_keys = experts.n_layer * experts.n_expert
        sizes = experts.matrix_bytes[0].astype(np.int64)  # [matrix]
        self._open(path, wanted, np.tile(sizes, (n_keys, 1)))
        self._map = experts
        # Each expert tensor's whole pages in llama.cpp's mapping (its experts' and the pages
        # between them), and their file offsets: unused once the tensors point here, they
        # become empty memory. Left mapped, mincore would count there the file's pages another
        # process read (the page cache), as RAM of ours: 143 MB over the budget in
        # bench/memory_budget.py, where the cells without the manager had read the whole file.
        first, last = mapping_spans[:: experts.n_expert], mapping_spans[experts.n_expert - 1 :: experts.n_expert]
        self._tensor_spans = np.stack((first[:, :, 0], last[:, :, 1]), axis=-1).reshape(-1, 2)
        self._tensor_file_starts = mapping_file_spans[:: experts.n_expert, :, 0].reshape(-1)
        for start, end in self._tensor_spans.tolist():
            map_empty(start, end - start)
        self._n_expert = experts.n_expert
        # Within a block: matrix m's span starts at _span_at[m], its data at the file's phase after.
        spans = sizes + PAGE
        self._span_at = np.concatenate(([0], np.cumsum(spans)[:-1]))
        self._span_bytes = spans
        self.block_bytes = int(spans.sum())
        self._phase = experts.base_offsets % PAGE  # [layer, matrix]
        self.n_positions = n_keys  # room for every expert: a budget bounds how many hold pages
        region_bytes = self.n_positions * self.block_bytes
        address = reserve(region_bytes)
        self._region, self._region_bytes = address, region_bytes
        madvise(address, address + region_bytes, MADV_NOHUGEPAGE)  # (huge pages would give empty positions RAM)
        self._position_of = np.full((experts.n_layer, experts.n_expert), -1, dtype=np.int32)  # key -> position
        self._key_at = np.full(self.n_positions, _FREE, dtype=np.int64)  # position -> key
        self._populated = np.zeros(self.n_positions, dtype=bool)
        self._free: OrderedDict[int, None] = OrderedDict()  # free populated positions, oldest first
        self._landing: dict[int, int] = {}  # job -> position of a key evicted while it was read
        self._landing_left: dict[int, int] = {}  # such a position -> its reads still landing
        self.spare = spare
        self.populates = self.releases = 0  # positions given pages, and giving them back
        self.landings = 0  # positions let go of while a read still landed in them (held until it has)
        self._can_populate = True
        self._start_worker()

    # --- where llama.cpp finds them (the router hook asks) -------------------------------------------
    def tensor_placement(self, layer: int, matrix: int) -> tuple[int, int, int]:
        """Where `layer`'s expert tensor `matrix` is to point (position 0's data), the stride
        from one position to the next (the tensor's nb[2]) and how many there are (its ne[2])."""
        return self._data(0, layer, matrix), self.block_bytes, self.n_positions

    def positions(self, layer: int) -> np.ndarray:
        """int32 [n_expert]: each expert's position in the pool (-1: not placed). The experts
        llama.cpp chose for the layer about to run are all placed (`ensure`)."""
        return self._position_of[layer]

    def _block(self, position: int) -> int:
        return self._region + position * self.block_bytes

    def _data(self, position: int, layer: int, matrix: int) -> int:
        """Where the data of a matrix of `layer` at `position` starts (at the file's page phase)."""
        return self._block(position) + int(self._span_at[matrix] + self._phase[layer, matrix])

    # --- RAM ------------------------------------------------------------------------------------------
    @property
    def unmapped_bytes(self) -> int:
        """Every populated position's pages (the placed experts' included: see `placed_bytes`)."""
        with self._lock:
            return int(np.count_nonzero(self._populated)) * self.block_bytes

    @property
    def placed_bytes(self) -> int:
        """The expert matrices in place (or being read) at positions: the cache's experts."""
        with self._lock:
            return int(self._sizes[0][np.nonzero(self._slot >= 0)[1]].sum())

    # --- reads ----------------------------------------------------------------------------------------
    def _start(self, key: int, matrices: tuple[int, ...] = ALL_MATRICES) -> list[tuple[int, int, int, int, int]]:
        layer, expert = divmod(key, self._n_expert)
        position = int(self._position_of[layer, expert])
        if position < 0:
            position = self._take_position()
            self._position_of[layer, expert] = position
            self._key_at[position] = key
            self._key_bytes[key] = 0
        block = self._block(position)
        ranges = self._map.ranges(layer, expert)
        reads = []
        for matrix in matrices:
            if self._slot[key, matrix] >= 0:
                continue  # read, or being read
            offset, nbytes = ranges[matrix]
            phase = int(self._phase[layer, matrix])
            span = int(self._span_bytes[matrix]) if phase else nbytes
            reads.append(
                self._new_read(key, matrix, position, block + int(self._span_at[matrix]), span, offset - phase)
            )
        self._placed[key] = bool((self._slot[key] >= 0).all())
        return reads

    def _read_complete(self, key: int, matrix: int, result: int) -> bool:
        # A span read from the page before the matrix's first ends past it (for the file's last
        # matrix the read may stop at the end of the file).
        return result > 0 and result >= self._phase[key // self._n_expert, matrix] + self._sizes[key, matrix]

    def _read_buffered(self, key: int, matrix: int) -> int:
        layer, expert = divmod(key, self._n_expert)
        offset, nbytes = self._map.ranges(layer, expert)[matrix]
        target = (ctypes.c_char * nbytes).from_address(self._data(int(self._slot[key, matrix]), layer, matrix))
        with open(self._path, "rb", buffering=0) as f:
            return os.preadv(f.fileno(), [memoryview(target).cast("B")], offset)

    def _take_position(self) -> int:
        """A free position with its pages (the most recently freed), else an empty one given
        pages now."""
        while True:
            if self._free:
                position, _ = self._free.popitem()
                return position
            empty = np.flatnonzero((self._key_at == _FREE) & ~self._populated)
            if len(empty):
                break
            # As many positions as experts, but an expert let go of while its read was landing
            # and read again holds two until the first lands: wait for it.
            self._collect(1)
        position = int(empty[0])
        self._populate(position)
        return position

    def _populate(self, position: int) -> None:
        """Allocate the position's pages now, in one call: an O_DIRECT read into pages not there
        faults them in one at a time (slots.py)."""
        block = self._block(position)
        self.populates += 1
        self._populated[position] = True
        if self._can_populate and not madvise(block, block + self.block_bytes, MADV_POPULATE_WRITE):
            self._can_populate = False
            log.info("MADV_POPULATE_WRITE refused (kernel older than 5.14?): reads fault their pages in")

    # --- evictions ------------------------------------------------------------------------------------
    def evict(self, keys: np.ndarray) -> None:
        """Let `keys` go: their positions are free for the next reads (a read still landing in
        one frees it once landed)."""
        with self._lock:
            if not self.restored:
                self._let_go(keys)

    def evict_now(self, keys: np.ndarray, *, again: bool = True) -> int:
        """As `evict` (the sweep finds no strays: llama.cpp's mapping has empty memory under the
        experts); returns how many held a position."""
        with self._lock:
            if self.restored:
                return 0
            placed = int(np.count_nonzero(self._position_of.ravel()[np.asarray(keys, dtype=np.int64)] >= 0))
            self._let_go(keys)
        return placed

    def _let_go(self, keys: np.ndarray) -> None:
        for key in np.asarray(keys).tolist():
            if self._wanted[key] or self._ensured_at[key] == self.current_stamp:
                continue
            layer, expert = divmod(key, self._n_expert)
            position = int(self._position_of[layer, expert])
            if position < 0:
                continue
            self._position_of[layer, expert] = -1
            jobs = [self._job_of.pop((key, m)) for m in range(N_MATRICES) if (key, m) in self._job_of]
            in_flight = [job for job in jobs if not self._drop_held(job)]
            self._slot[key] = -1
            self._placed[key] = False
            self._matrices_left[key] = 0
            if in_flight:  # the disk still writes there: free once landed
                self.landings += 1
                self._key_at[position] = _LANDING
                self._landing_left[position] = len(in_flight)
                for job in in_flight:
                    self._landing[job] = position
            else:
                self._free_position(position)

    def _landed_after_eviction(self, position: int) -> None:
        self._landing_left[position] -= 1
        if not self._landing_left[position]:
            del self._landing_left[position]
            self._free_position(position)

    def _free_position(self, position: int) -> None:
        self._key_at[position] = _FREE
        self._free[position] = None

    def settle(self) -> None:
        """Give back the pages of the oldest free positions beyond the spare allowance (each a
        page-table change, but only where the cache's capacity shrinks)."""
        if len(self._free) <= self.spare:
            return
        with self._lock:
            while len(self._free) > self.spare:
                position, _ = self._free.popitem(last=False)
                block = self._block(position)
                madvise(block, block + self.block_bytes, MADV_DONTNEED)
                self._populated[position] = False
                self.releases += 1

    def restore_file_mapping(self) -> None:
        """The router hook pointed the tensors back at llama.cpp's mapping: map the file there
        again (a page llama.cpp touches then faults in from it), stop, and give every position's
        pages back."""
        with self._lock:
            self.map_file_back()
            self.restored = True
            self._held.clear()  # (never to be read)
            madvise(self._region, self._region + self._region_bytes, MADV_DONTNEED)
            self._populated[:] = False
            log.warning("expert reads stopped: the model's experts are read from the file on demand")

    def map_file_back(self) -> None:
        """Map the file again under the expert tensors in llama.cpp's mapping."""
        spans = zip(self._tensor_spans.tolist(), self._tensor_file_starts.tolist(), strict=True)
        with open(self._path, "rb") as f:
            for (start, end), offset in spans:
                map_fixed(start, end - start, PROT_READ, MAP_SHARED, f.fileno(), offset)

    def _free_memory(self) -> None:
        # The tensors still point here: llama.cpp must compute nothing more (the engine closes it next).
        unreserve(self._region, self._region_bytes)
