"""Keep a model's resident bytes within a budget, reading experts just before they are used.

llama.cpp maps the experts from the file (not repacked: evictable file pages). The
router hook tells us each layer's experts before the layer's attention runs, and guesses
the next layers' from the same hidden state; the cache decides which experts stay; the hook
submits the reads of the misses, then of the guesses (engine/experts/io.py), and an I/O
thread evicts the losers, while attention computes.
Non-expert weights (attention, norms, routers, output, the embedding rows in use) are never
evicted; the budget left after them, in whole experts, is the cache's capacity. A periodic
sweep checks with mincore what is really resident, evicts stray expert pages (a fault's
read-around, a read that lost a race) and re-derives the capacity from the measured
non-expert bytes.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.experts.cache import CachePolicy, ExpertCache
from engine.experts.direct_io import DirectExpertIO, direct_reads_work
from engine.experts.footprint import ExpertFootprint
from engine.experts.guess_choice import GuessChoice
from engine.experts.history import PRIOR_TOKENS, history_tokens, load_history, save_history
from engine.experts.io import N_MATRICES, ExpertIO, IOCounters, ReadMethod
from engine.experts.map import EXPERT_TENSORS, ExpertMap
from engine.experts.page_control import (
    MADV_PAGEOUT,
    MADV_RANDOM,
    PAGE,
    FileMapping,
    madvise,
    pages_inside,
    pages_touched,
    residency,
)
from engine.experts.positions import PositionedExpertIO, positions_fit
from engine.model_info import ModelInfo

log = logging.getLogger(__name__)

# A sweep (mincore over the whole mapping: about 20 ms for the 4B) runs every 0.25 s while
# it evicts stray pages, and backs off to every 2 s while it evicts none.
SWEEP_SECONDS = (0.25, 2.0)
# pread workers (WILLNEED needs one, to evict): at 1 GiB on the 4B shape, 1, 2 and 4 decoded
# 3.7, 4.1 and 4.4 tokens/s (the disk serves concurrent reads faster than one at a time).
IO_THREADS = 4
LARGEST_FOLIO = 2 << 20  # a PMD: the largest page-cache folio on x86-64 (and arm64 with 4 KiB pages)
# Later layers whose experts are guessed and read ahead during decode (their routers applied
# to the current layer's input), and how reads are made. Measured at 1 GiB on the skewed 4B
# shape (an AMX Xeon, 2 cores, medians of interleaved runs): lookahead 0/1/2/3 decoded
# 3.65/3.98/4.89/3.94 tokens/s with 0/16/24/30% of the bytes read wasted; at lookahead 2
# WILLNEED took 385 ms of machine CPU per token against pread's 498 (bench/read_methods.py:
# about 0.3 against 0.45-1.5 s per GB), which decides on 2 cores.
# On an AMD EPYC (2 cores, after the callbacks were trimmed, bench/memory_budget.py, 256 tokens)
# lookahead 2 against 0: 3.19 against 2.87 tokens/s at 1 GiB, 7.14 against 7.25 at 2 GiB.
# Once the hook issued the reads itself (engine/experts/io.py), the same machine, 128 tokens,
# interleaved: lookahead 1 against 2 decoded 6.03/6.21 against 5.90/5.37 tokens/s at 1 GiB
# (15.5% of the bytes read wasted against 25%) and 16.2/16.1 against 15.6/15.4 at 2 GiB; 3 was
# no faster than 2 (4.70/5.01 against 4.09/5.73 at 1 GiB, a noisier hour). Reads are now issued
# as soon as they are known, so a deeper guess buys little time and costs wasted reads.
# (All of these guessed every expert of a later layer; a guess now names its best half, see
# ExpertMap.n_guessed.) With DIRECT reads (an Intel Xeon, 2 cores, 1 GiB, 128 tokens,
# interleaved): half the experts one layer ahead 8.41/8.22/8.10 tokens/s (0.5% of the bytes
# wasted), all of them 7.09/7.58/7.91 (3.6%), all of them two layers ahead 8.75/8.11/7.52 (18%),
# half of them two layers ahead 8.30/7.84/7.82 (3%). Where the cache serves most uses, guessing
# costs more than it hides (computing and pinning the guesses every layer; most are hits): at 2
# GiB on the 4B lookahead against none 8.96 against 9.54 tokens/s (bench/memory_budget.py, this
# machine; 11.75 against 12.27 an hour before; 16.99 against 17.54 on an AMD EPYC), the 21B at
# 8 GiB 2.70 against 2.81 (3.60 against 3.70 on the EPYC), while at 1 GiB 7.28 against 6.49. So
# guesses were read only where misses would be many. Since a guess whose experts are all in the
# cache is pinned without a cache admission (`_read_ahead`: most guesses, where most uses hit),
# guessing pays there too: an AMD EPYC (AVX2, 2 cores), interleaved pairs, against no guesses:
# the 4B at 2 GiB (expected hit rate 0.96), 256 tokens, 15.44/14.45/13.90/14.16 against 12.91/
# 12.56/13.37/12.77 tokens/s, llama.cpp waiting 3.1-3.5 ms a token against 8.3-9.0; 512 tokens
# 14.60/14.47/14.83 against 12.94/12.91/13.14 (6% of the bytes read wasted); the 21B at 8 GiB
# (0.90), 96 tokens, 2.87/3.22 against 2.55/3.06, waiting 30-33 ms a token against 74-76. So
# guesses go wherever misses are expected at all (GUESSES_BELOW_HIT_RATE; not measured between
# 0.96 and 0.99). Whether they pay also depends on the disk's speed against the compute, so
# where guesses go by default, each decode token's guessing is then chosen by measurement
# (guess_choice.py).
# Once reads went to positions (positions.py: a read costs the CPU a third of what it did) and
# guesses waited in our queue behind exact reads (direct_io.SPECULATIVE_IN_FLIGHT), an Intel Xeon
# (2 cores), 4B at 1 GiB, 192 tokens, interleaved runs, guessing forced on: llama.cpp waited
# 18.6/21.3/20.9/27.0 ms a token one layer ahead (6.5% of the bytes read wasted) against
# 16.6/17.4/20.9/22.5/32.2/23.0 two layers ahead (15%), and three layers ahead 27.2/26.4 (22%).
# No better two ahead, and bench/memory_budget.py with two ahead (code cf95b1e) measured a hit
# rate of 0.960x the static oracle against 0.965x one ahead (wrong guesses take cache room): one.
LOOKAHEAD_LAYERS = 1
# With DIRECT reads a guess's lower half (the experts ranked below n_guessed) has its gate
# matrix read ahead, the up and down only once the layer's router confirms it: llama.cpp
# waited almost only for gate matrices (a layer's exact reads start at its input and the gate
# product comes right after attention, while up and down land during the gate product), and a
# wrong gate costs a third of a wrong expert. An AMD EPYC (AVX2, 2 cores), 4B at 1 GiB, 256
# tokens, 10 interleaved pairs against whole reads of the top half only: llama.cpp waited
# 18.3-21.2 ms a token against 31.5-36.9 (every pair lower), 6.43 against 6.08 tokens/s on
# average (6 pairs of 10 faster: the time outside the waits varied by 30% on this machine),
# 5.8% of the bytes read wasted against 1.0% (a wrong partial guess still kept in the cache
# then). Reading the lower half whole waited 23-26 ms (7.1% wasted).
GATE_ONLY_GUESSES = True
# DIRECT reads cost the CPU a fraction of WILLNEED's (direct_io.py), but each layer pays for
# checking llama.cpp's choice (`ensure`, about 25 us), each read and eviction for an mmap call
# (about 20-30 us), a slot used for the first time for allocating its RAM (in this VM 0.26 ms
# median, 2 ms at the 90th percentile: guest memory touched for the first time), and their
# reads landed later. (Not llama.cpp's compute: streaming over memfd pages measured no slower
# than over the file's.) Where misses are few that costs more than it saves, so DIRECT is used
# where misses will be many: below this expected hit rate (`expected_hit_rate`, from the usage
# history).
# Measured (an Intel Xeon, 2 cores, interleaved pairs, DIRECT against WILLNEED; expected, then
# real hit rate): 4B at 1 GiB (0.61, 0.56) 8.13/8.18 against 6.51/6.66 tokens/s; at 1.5 GiB
# (0.81, 0.75) 10.26/10.12 against 9.52/9.50; at 2 GiB (0.96, 0.93) 11.98/11.97 against
# 12.41/12.43; 21B at 8 GiB (0.90, 0.82) 2.73/2.74 against 2.98/2.97; nothing evicted (a cache
# not yet full, so every read takes a fresh slot) 12.61/12.43 against 13.32/13.07.
# On an AMD EPYC (AVX2, 2 cores), where WILLNEED costs two to four times the Xeon's CPU per GB,
# direct reads everywhere cut the reads' CPU to a quarter (4B) or a sixth (21B), not the time:
# 4B at 2 GiB 10.93 against 10.95 tokens/s (four interleaved pairs, 256 tokens), 21B at 8 GiB
# 2.45/2.12 against 2.29/2.33 (llama.cpp waited 59-60 ms a token against 41-42).
# Once the hook's calls were trimmed and OpenMP's workers spun longer (GOMP_SPINCOUNT), the same
# EPYC, 4B at 2 GiB (expected 0.96, real 0.933), 256 tokens, three interleaved runs: DIRECT
# 13.27/13.28/14.07 against 12.89/12.85/12.27 tokens/s (every pair faster), the reads' CPU 5 ms a
# token against 15. So DIRECT is used wherever a miss is expected at all, and the guesses below
# GUESSES_BELOW_HIT_RATE (see LOOKAHEAD_LAYERS: 0.85 until guesses that all hit became cheap).
DIRECT_BELOW_HIT_RATE = 0.99
GUESSES_BELOW_HIT_RATE = 0.97
EVICTION_BACKLOG = 0.02  # of the budget: evicted experts' bytes a read may leave to the eviction worker
# DIRECT: RAM for this many layers' experts kept ready for the next reads (slots spare or loose;
# free positions with their pages)
SPARE_EXPERTS = 2
# DIRECT reads land at positions of memory of our own that llama.cpp's expert tensors are
# pointed at (engine/experts/positions.py), where the model's shapes allow it.
POSITIONS = True
_TIMING_SAMPLES = 16384  # prefetch timings kept for the medians (a long session must not grow them)


@dataclass(eq=False)
class _LayerWait:
    """A layer about to use its experts: what its matrices wait for, and how long they did."""

    keys: np.ndarray  # waited for (DIRECT: every expert llama.cpp chose; else the misses read)
    misses: np.ndarray  # counted in the statistics
    waited: float = 0.0
    in_time: bool = True


class BudgetTooSmallError(EngineError, ValueError):
    """The budget cannot hold the weights every token needs plus one layer's experts."""


@dataclass(frozen=True, eq=False)
class ExpertStats:
    budget_bytes: int
    capacity_experts: int
    expert_bytes: int
    prefetch: bool
    policy: str
    evaluations: int  # tokens of decode, batches of prompt (each runs every layer once)
    hits: int
    misses: int
    bytes_read: int  # by prefetch; without it, misses * expert_bytes are faulted in instead
    lookahead: int  # layers read ahead speculatively
    exact_reads: int  # experts read because the layer about to run needs them
    speculative_reads: int  # experts read ahead for a later layer
    misses_read_ahead: int  # of the misses, those a speculative read had already started
    wasted_bytes: int  # read ahead for a layer that then did not use them (bytes really read)
    # Decode tokens run with guesses and without (where the manager chooses, see
    # guess_choice.py; else all of one kind), and their mean time from layer 0 to the last.
    guessed_tokens: int
    unguessed_tokens: int
    guessed_ms_per_token: float | None
    unguessed_ms_per_token: float | None
    wait_s: float  # llama.cpp kept waiting in the hook for reads
    read_busy_s: float  # wall time with reads outstanding
    io_cpu_s: float  # CPU time issuing reads and evicting (I/O threads and the hook's read calls)
    on_time: int  # layers whose missing experts were in RAM when llama.cpp reached them
    late: int  # layers whose missing experts were not (llama.cpp waited for them)
    lead_ms_median: float | None  # how long before use the on-time reads finished (WILLNEED: were issued)
    late_ms_median: float | None  # how long the late ones kept the hook waiting
    resident_bytes: int | None  # model bytes in RAM at the last sweep (mincore)
    peak_resident_bytes: int | None
    predictions_checked: int  # (layer, token) rows whose predicted experts were compared
    prediction_mismatches: int
    unpredicted_reads: int  # DIRECT: experts llama.cpp chose that were read only then (0 when predictions hold)
    positioned: bool  # DIRECT reads to positions llama.cpp's expert tensors point at (positions.py)
    positions_populated: int  # positions given pages, and giving them back: the only page-table
    positions_released: int  # changes reads to positions make (the session's, not reset)
    usage: np.ndarray = field(repr=False)  # [n_layer, n_expert] selections by llama.cpp

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 1.0

    @property
    def miss_bytes(self) -> int:
        return self.misses * self.expert_bytes

    @property
    def bytes_read_per_token(self) -> float:
        return self.miss_bytes / self.evaluations if self.evaluations else 0.0

    @property
    def wasted_read_fraction(self) -> float:
        """Speculative bytes read and never used, of all bytes read."""
        return self.wasted_bytes / self.bytes_read if self.bytes_read else 0.0


def fixed_bytes(info: ModelInfo) -> int:
    """Weights every token needs and the manager never evicts (embedding rows estimated)."""
    return ExpertFootprint.of_model(info).fixed_bytes


def minimum_budget(info: ModelInfo) -> int:
    """Fixed weights plus every expert of one layer (a prompt batch may use them all)."""
    return ExpertFootprint.of_model(info).minimum_budget


class ExpertManager:
    """A RouteListener (see router_hook) that enforces `budget_bytes` of resident model weights."""

    def __init__(
        self,
        info: ModelInfo,
        experts: ExpertMap,
        budget_bytes: int,
        *,
        prefetch: bool = True,
        policy: CachePolicy = CachePolicy.LFU,
        history_path: Path | None = None,
        lookahead: int | None = None,
        read_method: ReadMethod | None = None,
    ) -> None:
        """`history_path`: this model's expert usage history (engine/experts/history.py): the
        cache starts from it, and `close` adds this session's selections to it. `lookahead`:
        how many later layers' experts are guessed and read ahead (decode only; 0: none);
        None for it or `read_method`: the measured defaults above (both by `expected_hit_rate`),
        and where guesses may pay, whether to guess is then decided while decoding
        (guess_choice.py)."""
        if budget_bytes < minimum_budget(info):
            need = minimum_budget(info) / 2**30
            raise BudgetTooSmallError(
                f"a memory budget of {budget_bytes / 2**30:.2f} GiB is too small for {info.path.name}: "
                f"it needs at least {need:.2f} GiB (the weights every token uses plus one layer's experts)"
            )
        self.info, self.map = info, experts
        self.budget_bytes = budget_bytes
        self.prefetch = prefetch
        self.footprint = ExpertFootprint.of_model(info)
        self._fixed = self.footprint.fixed_bytes
        self.cache = ExpertCache(
            experts.n_layer * experts.n_expert,
            self._capacity(self._fixed),
            policy,
            layer_size=experts.n_expert,
            used_per_layer=experts.n_expert_used,
        )
        self._history_path = history_path
        history = load_history(history_path, experts.n_layer, experts.n_expert) if history_path else None
        self._history = history
        self.seed_uses: np.ndarray | None = None  # what the cache's counts started from
        if history is not None and history.sum() > 0:
            tokens = min(PRIOR_TOKENS, history_tokens(history, experts.n_expert_used))
            per_token = experts.n_layer * experts.n_expert_used
            self.seed_uses = (history / history.sum() * tokens * per_token).ravel()
            self.cache.seed(self.seed_uses)
        expected_hit_rate = self.expected_hit_rate()
        guessing = expected_hit_rate < GUESSES_BELOW_HIT_RATE
        if read_method is None:
            read_method = ReadMethod.DIRECT if expected_hit_rate < DIRECT_BELOW_HIT_RATE else ReadMethod.WILLNEED
        self.read_method = ReadMethod(read_method)
        # Guessing on this machine is measured against not guessing, unless asked for or against.
        self.guess_choice = GuessChoice() if lookahead is None and guessing and prefetch else None
        if lookahead is None:
            lookahead = LOOKAHEAD_LAYERS if guessing else 0
        self.guess_layers = lookahead if prefetch else 0  # when guessing
        self.lookahead = self.guess_layers  # for the token being computed (the router hook reads it)
        self._token_started: float | None = None  # the decode token's layer 0 (guess_choice)
        self.trace: list[np.ndarray] | None = None  # set to [] to record the keys of each access
        self.trace_uses: list[np.ndarray] = []  # and how many tokens used each
        self._usage = np.zeros((experts.n_layer, experts.n_expert), dtype=np.int64)  # the whole session
        self._usage_at_reset = np.zeros_like(self._usage)  # stats() counts from here
        # Read ahead (or found resident) for a later layer that has not run yet: pinned until it
        # does; `_ahead_read`: those that needed a read (a miss read early, or a wasted read).
        self._ahead = np.zeros(self.cache.n_keys, dtype=bool)
        self._ahead_read = np.zeros(self.cache.n_keys, dtype=bool)
        self._gate_only = np.zeros(self.cache.n_keys, dtype=bool)  # read ahead: the gate matrix alone
        self._predicted: dict[int, np.ndarray] = {}
        self._misses: dict[int, np.ndarray] = {}
        self._waits: dict[int, _LayerWait] = {}  # layers whose expert matrices are being waited for
        # Per layer with misses: how long before use the reads were done, or how long
        # llama.cpp waited for them; the latest ones only (medians), the counts in _counts.
        self._leads: collections.deque[float] = collections.deque(maxlen=_TIMING_SAMPLES)
        self._late: collections.deque[float] = collections.deque(maxlen=_TIMING_SAMPLES)
        self._counts = {
            "evaluations": 0,
            "hits": 0,
            "misses": 0,
            "checked": 0,
            "mismatches": 0,
            "on_time": 0,
            "late": 0,
            "read_ahead": 0,
            "wasted_bytes": 0,
            "wait_s": 0.0,
            "unpredicted": 0,
            # Decode tokens timed from layer 0 to the last, with guesses and without.
            "guessed_tokens": 0,
            "guessed_s": 0.0,
            "unguessed_tokens": 0,
            "unguessed_s": 0.0,
        }
        self._io: ExpertIO | None = None
        self._mapping: FileMapping | None = None
        self._copied = 0
        self._copied_pages: list[tuple[int, int]] = []
        self._last_sweep = 0.0
        self._sweep_interval = SWEEP_SECONDS[0]
        self._stamp = 0  # accesses made: a read queued for an earlier one is stale
        self._resident: int | None = None
        self._peak: int | None = None

    def expected_hit_rate(self) -> float:
        """The share of expert uses the cache would serve holding the most used experts: by this
        model's usage history, or without one as if every expert were used equally often."""
        if self.seed_uses is None:
            return min(1.0, self.cache.capacity / self.cache.n_keys)
        top = np.sort(self.seed_uses)[::-1][: self.cache.capacity]
        return float(top.sum() / self.seed_uses.sum())

    def _capacity(self, fixed: int) -> int:
        return self.footprint.capacity(self.budget_bytes, fixed)

    # --- set-up -------------------------------------------------------------------------------
    def attach(self, mapping: FileMapping, copied: list[tuple[int, int]] = ()) -> None:
        """Start managing llama.cpp's mapping: evict every expert, then read them on demand.

        llama.cpp maps the file with MAP_POPULATE, so right after loading the whole model is
        in RAM; from here on only the budget is. `copied`: (file offset, bytes) of weights
        llama.cpp keeps in memory of its own (repacked, see engine/weight_layout.py): resident
        for good and counted in the budget, while their file pages no longer count.
        """
        self._copied = sum(nbytes for _, nbytes in copied)
        self._copied_pages = [
            ((start - mapping.start) // PAGE, (end - mapping.start) // PAGE)
            for start, end in (pages_inside(mapping.address(offset), nbytes) for offset, nbytes in copied)
        ]
        first = min(t.offset for t in self.info.tensors.values())
        if not mapping.covers(first, self.info.file_size - first):
            raise EngineError("llama.cpp's mapping does not cover the model's weights")
        self._mapping = mapping
        n_keys = self.cache.n_keys
        file_ranges = np.zeros((n_keys, 3, 2), dtype=np.int64)
        evict_spans = np.zeros((n_keys, 3, 2), dtype=np.int64)
        touch_spans = np.zeros((n_keys, 3, 2), dtype=np.int64)
        for layer in range(self.map.n_layer):
            for expert in range(self.map.n_expert):
                key = layer * self.map.n_expert + expert
                for m, (offset, nbytes) in enumerate(self.map.ranges(layer, expert)):
                    file_ranges[key, m] = offset, nbytes
                    evict_spans[key, m] = pages_inside(mapping.address(offset), nbytes)
                    touch_spans[key, m] = pages_touched(mapping.address(offset), nbytes)
        evict_file_spans = evict_spans - (mapping.start - mapping.file_offset)
        self._spans = (file_ranges, evict_spans, evict_file_spans, touch_spans)
        self._io = self._open_io(self.read_method)
        self._key_pages = (evict_spans - mapping.start) // PAGE  # [key, matrix, (first, end)] page indices
        embedding = self.info.tensors["token_embd.weight"]
        start, end = pages_inside(mapping.address(embedding.offset), embedding.nbytes)
        madvise(start, end, MADV_RANDOM)  # a new token faults in its row's page, not a window
        for name in [f"blk.{layer}.{t}.weight" for layer in range(self.map.n_layer) for t in EXPERT_TENSORS]:
            t = self.info.tensors[name]
            span = pages_inside(mapping.address(t.offset), t.nbytes)
            if self.prefetch:
                # We read the experts; a fault must not read its neighbours around it as well
                # (pages nobody asked for, over the budget until the next sweep).
                madvise(*span, MADV_RANDOM)
            madvise(*span, MADV_PAGEOUT)
        madvise(start, end, MADV_PAGEOUT)
        self._io.evict(np.arange(n_keys))  # also drops what was read but is not mapped
        self._io.settle()
        self._io.call(self._sweep)
        self._io.wait_idle()

    def _open_io(self, method: ReadMethod, *, positions: bool = True) -> ExpertIO | DirectExpertIO:
        """The reads of `method`; DIRECT only where it works (else WILLNEED, said in the log),
        at positions where `positions` and the model allow."""
        file_ranges, evict_spans, evict_file_spans, touch_spans = self._spans
        if method is ReadMethod.DIRECT and not self.prefetch:  # llama.cpp faults experts in: from the file
            method = self.read_method = ReadMethod.WILLNEED
        if method is ReadMethod.DIRECT:
            why_not = direct_reads_work(self.info.path, int(file_ranges[0, 0, 0]))
            if why_not is None:
                spare = SPARE_EXPERTS * self.map.n_expert_used
                resident = self.cache.resident
                if positions and POSITIONS and positions_fit(self.map):
                    return PositionedExpertIO(
                        self.info.path, self.map, evict_spans, evict_file_spans, resident, spare=spare
                    )
                return DirectExpertIO(self.info.path, evict_spans, evict_file_spans, resident, spare_slots=spare * 3)
            log.info("experts are read with WILLNEED, not O_DIRECT: %s", why_not)
            method = self.read_method = ReadMethod.WILLNEED
        return ExpertIO(
            self.info.path,
            file_ranges,
            evict_spans,
            evict_file_spans,
            touch_spans,
            self.cache.resident,
            shares_folios=self._near_tensor_ends(file_ranges),
            method=method,
            n_threads=IO_THREADS,
            backlog_limit=int(EVICTION_BACKLOG * self.budget_bytes) // self.map.expert_bytes,
        )

    def _near_tensor_ends(self, file_ranges: np.ndarray) -> np.ndarray:
        """Per key: whether a matrix lies within a large folio's reach of its tensor's ends."""
        n_expert = self.map.n_expert
        layers = np.arange(self.cache.n_keys) // n_expert
        starts = self.map.base_offsets[layers]  # [key, matrix]
        ends = starts + n_expert * self.map.matrix_bytes[layers]
        offsets, sizes = file_ranges[:, :, 0], file_ranges[:, :, 1]
        near = (offsets - starts < LARGEST_FOLIO) | (ends - (offsets + sizes) < LARGEST_FOLIO)
        return near.any(axis=1)

    def close(self) -> None:
        if self._io is not None:
            self._io.close()
            self._io = None
            self._save_history()

    def _save_history(self) -> None:
        if self._history_path is None or not self._usage.any():
            return
        try:
            save_history(self._history_path, self._history, self._usage, self.map.n_expert_used)
        except OSError as exc:  # only the next session's warm start is lost
            log.warning("could not save the expert usage history to %s: %s", self._history_path, exc)

    # --- the router hook's calls (on the computing thread) ------------------------------------------
    def experts_predicted(
        self, layer: int, experts: np.ndarray, layer_input: np.ndarray | None = None, guesses: list[list[int]] = ()
    ) -> None:
        if self._io is None:
            return
        if layer == 0:
            self._counts["evaluations"] += 1
            self._adjust_capacity()
            now = time.perf_counter()
            self._token_started = now if len(experts) == 1 else None  # (a prompt batch's is not timed)
            if now - self._last_sweep > self._sweep_interval:
                self._last_sweep = now
                self._io.call(self._sweep)
        elif layer == self.map.n_layer - 1 and self._token_started is not None:
            self._token_timed(time.perf_counter() - self._token_started)
        self._predicted[layer] = experts
        if len(experts) == 1:  # decode: each expert used once (the cheap path: numpy calls cost microseconds)
            chosen, uses = np.flatnonzero(experts[0]), None
        else:
            used = experts.sum(axis=0)
            chosen = np.flatnonzero(used)
            uses = used[chosen]
        keys = layer * self.map.n_expert + chosen
        read_ahead = keys[self._ahead_read[keys] & self.cache.resident[keys]]  # misses, read early
        self._end_read_ahead(layer, keys)
        access = self.cache.access(keys, uses, pinned=self._ahead)
        self._counts["hits"] += len(access.hits) - len(read_ahead)
        self._counts["misses"] += len(access.misses) + len(read_ahead)
        self._counts["read_ahead"] += len(read_ahead)
        if self.trace is not None:
            self.trace.append(keys)
            self.trace_uses.append(np.ones(len(keys), dtype=np.int64) if uses is None else uses)
        self._io.evict(access.evicted)
        self._stamp += 1
        self._io.current_stamp = self._stamp
        misses = access.misses
        if len(read_ahead):
            misses = np.concatenate((misses, read_ahead))
        if self.prefetch:
            self._io.read(access.misses, self._stamp)
            # A speculative read still queued or in flight is now needed: ask again as exact (a
            # gate-only guess is then read in full; a wrong one was dropped from the cache, so
            # no other hit holds part of an expert).
            if len(read_ahead):
                self._io.read(self._io.pending(read_ahead), self._stamp)
        self._misses[layer] = misses
        if guesses:
            self._read_ahead(layer, keys, guesses)
        self._io.settle()

    def _token_timed(self, seconds: float) -> None:
        """A decode token reached its last layer (which has no later layer to guess for): count
        its time, and choose whether the next token guesses."""
        self._token_started = None
        arm = "guessed" if self.lookahead > 0 else "unguessed"
        self._counts[f"{arm}_tokens"] += 1
        self._counts[f"{arm}_s"] += seconds
        if self.guess_choice is not None:
            self.guess_choice.token_done(seconds)
            self.lookahead = self.guess_layers if self.guess_choice.guessing else 0

    def _end_read_ahead(self, layer: int, used: np.ndarray) -> None:
        """`layer` runs now: its experts read ahead are no longer pinned; unused ones were wasted."""
        span = slice(layer * self.map.n_expert, (layer + 1) * self.map.n_expert)
        unused = self._ahead_read[span].copy()
        unused[used - span.start] = False
        wasted = np.flatnonzero(unused) + span.start
        if len(wasted):
            self._counts["wasted_bytes"] += self._io.bytes_read_for(wasted)
            # A wrong guess with its gate matrix only is no cached expert: dropped, so a later
            # use reads it and counts as a miss.
            partial = wasted[self._gate_only[wasted]]
            if len(partial):
                self.cache.drop(partial)
                self._io.evict(partial)
        self._ahead[span] = False
        self._ahead_read[span] = False
        self._gate_only[span] = False

    def _read_ahead(self, layer: int, in_use: np.ndarray, guesses: list[list[int]]) -> None:
        """Read the missing experts of the next layers, guessed from this layer's input (each
        guess best first): the best half whole and, where reads can be partial, the gate matrix
        of the rest (GATE_ONLY_GUESSES).

        Exact reads stay ahead of these in the I/O queues; a guess never evicts what this
        layer uses or what was read ahead for another layer still to run.
        """
        ahead, resident = self._ahead, self.cache.resident
        protected = ahead.copy()
        protected[in_use] = True
        n = self.map.n_expert
        for target, experts in enumerate(guesses, start=layer + 1):
            first = target * n
            guess = [first + e for e in experts if not ahead[first + e]]  # (Python: a few keys)
            if not guess:
                continue
            if all(resident[key] for key in guess):  # all hits: pinned, nothing to admit or read
                ahead[guess] = True
                protected[guess] = True
                continue
            guess = np.array(guess, dtype=np.int64)
            # One admission for the layer's whole guess (best first: where room is short the
            # best go in): each cache call costs tens of microseconds on the computing thread.
            admitted = self.cache.admit(guess, protected)
            pinned = np.concatenate((admitted.hits, admitted.misses))
            ahead[pinned] = True
            protected[pinned] = True
            if not len(admitted.misses):
                continue
            misses = admitted.misses
            self._ahead_read[misses] = True
            self._io.evict(admitted.evicted)
            # Useful until `target`'s own access (this access + the layers in between).
            stamp = self._stamp + target - layer
            if GATE_ONLY_GUESSES and self._io.partial_reads:
                below_best = set(guess[self.map.n_guessed :].tolist())  # (a set: np.isin costs ~20 us)
                lower = np.array([key in below_best for key in misses.tolist()], dtype=bool)
                self._gate_only[misses[lower]] = True
                # Gates first: llama.cpp uses them first.
                self._io.read(misses[lower], stamp, speculative=True, matrices=(0,))
                misses = misses[~lower]
            self._io.read(misses, stamp, speculative=True)

    def experts_selected(self, layer: int, experts: np.ndarray, *, matrix_calls: bool = False) -> None:
        if self._io is None:
            return
        predicted = self._predicted.pop(layer, None)
        if len(experts) == 1:  # one token: its k experts are distinct
            self._usage[layer, experts[0]] += 1
        else:
            np.add.at(self._usage[layer], experts.ravel(), 1)
        if predicted is not None:
            self._counts["checked"] += len(predicted)
            if len(predicted) != len(experts):  # a different set of tokens: every row is wrong
                self._counts["mismatches"] += len(predicted)
            elif len(experts) == 1:
                self._counts["mismatches"] += int(not predicted[0, experts[0]].all())
            else:
                chosen = np.zeros(predicted.shape, dtype=bool)
                np.put_along_axis(chosen, experts, True, axis=1)
                self._counts["mismatches"] += int(np.count_nonzero((chosen & ~predicted).any(axis=1)))
        misses = self._misses.pop(layer, None)
        if misses is None:
            misses = np.empty(0, dtype=np.int64)
        if self.read_method is ReadMethod.DIRECT:
            # An expert not read reads as zeros here, not as a page fault: whatever llama.cpp
            # chose that is not in place (a wrong prediction, a failed call) is read now, and
            # every expert it chose is waited for.
            keys = layer * self.map.n_expert + (experts[0] if len(experts) == 1 else np.unique(experts))
            self._counts["unpredicted"] += self._io.ensure(keys)
        elif self.prefetch and len(misses):
            keys = misses  # the rest faults in from the file, if need be
        else:
            self._waits.pop(layer, None)
            return
        # Wait for our reads rather than let llama.cpp fault the rest in a page at a time.
        self._waits[layer] = _LayerWait(keys, misses)
        if not matrix_calls:
            for matrix in range(N_MATRICES):
                self.matrix_needed(layer, matrix)

    def matrix_needed(self, layer: int, matrix: int) -> None:
        """llama.cpp is about to use `matrix` of `layer`'s experts: block until it is in RAM."""
        wait = self._waits.get(layer)
        if wait is None:
            return
        waited, in_time = self._io.wait_for(wait.keys, (matrix,))
        wait.waited += waited
        wait.in_time &= in_time
        if matrix < N_MATRICES - 1:
            return
        del self._waits[layer]
        if not len(wait.misses):
            return
        self._counts["wait_s"] += wait.waited
        if wait.in_time:
            self._counts["on_time"] += 1
            self._leads.append(time.perf_counter() - float(self._io.read_done_at[wait.misses].max()))
        else:
            self._late.append(wait.waited)
            self._counts["late"] += 1

    def matrix_pending(self, layer: int, matrix: int) -> bool:
        """Whether reads of `matrix` or a later matrix of `layer`'s experts are still in flight."""
        wait = self._waits.get(layer)
        return wait is not None and self._io.in_flight(wait.keys, tuple(range(matrix, N_MATRICES)))

    # --- experts at positions (the router hook asks) -----------------------------------------------
    @property
    def positioned(self) -> bool:
        """Experts are read to positions: llama.cpp's expert tensors must point there (see
        RouterHook.point_expert_tensors) before anything is evaluated."""
        return isinstance(self._io, PositionedExpertIO) and not self._io.restored

    def tensor_placement(self, layer: int, matrix: int) -> tuple[int, int, int, int]:
        """`layer`'s expert tensor `matrix`: its data's address in llama.cpp's mapping, where it
        is to point instead, the stride between positions and how many there are."""
        own = self._mapping.address(int(self.map.base_offsets[layer, matrix]))
        return own, *self._io.tensor_placement(layer, matrix)

    def expert_positions(self, layer: int) -> np.ndarray | None:
        """Each expert's position in `layer` (the router hook rewrites llama.cpp's choice to
        them), or None when experts are not read to positions."""
        return self._io.positions(layer) if self.positioned else None

    def positions_unavailable(self) -> None:
        """The tensors could not be pointed at positions: read experts into place instead."""
        log.info("llama.cpp's expert tensors could not be pointed at positions: experts are read into place")
        self._io.map_file_back()  # (slots go under the experts' own pages, the file between them)
        self._io.close()
        self._io = self._open_io(self.read_method, positions=False)
        self._io.evict(np.arange(self.cache.n_keys))
        self._io.settle()

    def routing_lost(self) -> None:
        """The router hook failed: experts may be used without our knowing. With DIRECT reads
        they would read as zeros, so the file goes back under them and WILLNEED reads take over
        (a page nobody read then faults in from the file)."""
        if isinstance(self._io, DirectExpertIO):
            self._io.restore_file_mapping()
            self._io.close()
            self.read_method = ReadMethod.WILLNEED
            self._io = self._open_io(self.read_method)

    @property
    def unmapped_bytes(self) -> int:
        """Model RAM outside llama.cpp's mapping (DIRECT's spare slots), for the budget's sums."""
        return self._io.unmapped_bytes if self._io is not None else 0

    # --- budget -------------------------------------------------------------------------------------
    def _adjust_capacity(self) -> None:
        capacity = self._capacity(self._fixed)
        if capacity != self.cache.capacity:
            self._io.evict(self.cache.resize(capacity))

    def _sweep(self) -> None:
        """On the I/O thread: measure residency, evict stray expert pages, re-measure fixed bytes."""
        mapping = self._mapping
        resident = residency(mapping.start, mapping.end)
        for first, last in self._copied_pages:
            resident[first:last] = False
        cumulative = np.concatenate(([0], np.cumsum(resident, dtype=np.int64)))
        pages = self._key_pages
        per_key = (cumulative[pages[:, :, 1]] - cumulative[pages[:, :, 0]]).sum(axis=1)
        # Keys the cache let go of while this ran have their evictions queued: not strays.
        stray = np.flatnonzero((per_key > 0) & ~self.cache.resident & (self._io.evictions_queued == 0))
        evicted = self._io.evict_now(stray)
        shortest, longest = SWEEP_SECONDS
        self._sweep_interval = shortest if evicted else min(longest, self._sweep_interval * 2)
        total = int(cumulative[-1]) * PAGE + self._copied + self._io.unmapped_bytes
        self._resident = total - int(per_key[stray].sum()) * PAGE
        self._peak = max(self._peak or 0, total)
        self._fixed = total - int(per_key.sum()) * PAGE - self._io.placed_bytes

    # --- reports ------------------------------------------------------------------------------------
    def stats(self) -> ExpertStats:
        io = self._io
        late = self._late
        c = self._counts
        return ExpertStats(
            budget_bytes=self.budget_bytes,
            capacity_experts=self.cache.capacity,
            expert_bytes=self.map.expert_bytes,
            prefetch=self.prefetch,
            policy=self.cache.policy.value,
            evaluations=c["evaluations"],
            hits=c["hits"],
            misses=c["misses"],
            bytes_read=io.counters.bytes_read if io else 0,
            lookahead=self.guess_layers,
            exact_reads=io.counters.exact_keys if io else 0,
            speculative_reads=io.counters.speculative_keys if io else 0,
            misses_read_ahead=c["read_ahead"],
            wasted_bytes=c["wasted_bytes"],
            guessed_tokens=c["guessed_tokens"],
            unguessed_tokens=c["unguessed_tokens"],
            guessed_ms_per_token=_mean_ms(c["guessed_tokens"], c["guessed_s"]),
            unguessed_ms_per_token=_mean_ms(c["unguessed_tokens"], c["unguessed_s"]),
            wait_s=c["wait_s"],
            read_busy_s=io.counters.busy_s if io else 0.0,
            io_cpu_s=io.counters.cpu_s if io else 0.0,
            on_time=c["on_time"],
            late=c["late"],
            lead_ms_median=float(np.median(self._leads)) * 1e3 if self._leads else None,
            late_ms_median=float(np.median(late)) * 1e3 if late else None,
            resident_bytes=self._resident,
            peak_resident_bytes=self._peak,
            predictions_checked=c["checked"],
            prediction_mismatches=c["mismatches"],
            unpredicted_reads=c["unpredicted"],
            positioned=self.positioned,
            positions_populated=getattr(io, "populates", 0),
            positions_released=getattr(io, "releases", 0),
            usage=self._usage - self._usage_at_reset,
        )

    def reset_stats(self) -> None:
        """Start counting afresh (the cache's contents and the trace stay)."""
        for key in self._counts:
            self._counts[key] = 0
        self._leads.clear()
        self._late.clear()
        self._usage_at_reset = self._usage.copy()
        if self._io is not None:
            self._io.counters = IOCounters()
        self._peak = self._resident


def _mean_ms(tokens: int, seconds: float) -> float | None:
    return seconds / tokens * 1e3 if tokens else None
