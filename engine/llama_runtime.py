"""One llama.cpp model and context: decode, sample, and the KV cache of sequence 0.

A thin layer over llama-cpp-python's `_internals` classes (their explicit `close()` and
ExitStack handle freeing). Not thread-safe: the engine calls it from one thread at a time.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from contextlib import ExitStack, closing

import llama_cpp
from llama_cpp import _internals

from engine import llama_log
from engine.config import EngineConfig, KvType, SamplingParams
from engine.errors import EngineError, ModelLoadError
from engine.experts.page_control import drop_file_ranges, drop_mapped_pages
from engine.ggml_libs import load_backends
from engine.kernel_check import llama_system_info
from engine.model_info import ModelInfo
from engine.weight_layout import WeightLayout, repack_overrides

SEQ = 0  # the engine keeps one live sequence and swaps conversations in and out of it
_GGML_TYPES = {KvType.F16: 1, KvType.Q8_0: 8}  # enum ggml_type
_NO_ABORT = ctypes.cast(None, llama_cpp.ggml_abort_callback)


class DecodeError(EngineError, RuntimeError):
    """llama.cpp failed to evaluate a batch."""


class DecodeAbortedError(EngineError):
    """A decode was cancelled; what llama.cpp finished stays in the cache (see `pos_max`)."""


class LlamaRuntime:
    def __init__(
        self,
        info: ModelInfo,
        config: EngineConfig,
        *,
        layout: WeightLayout,
        cb_eval=None,
        cb_eval_user_data=None,
        on_load_progress=None,
    ) -> None:
        self.info = info
        repack = layout is WeightLayout.REPACKED
        if load_backends() == 0:
            raise ModelLoadError("llama.cpp has no CPU backend for this processor (the installation is incomplete?)")
        self._stack = ExitStack()
        self._load_progress = self._progress_callback(info, repack, on_load_progress)
        model_params = llama_cpp.llama_model_default_params()
        model_params.progress_callback = self._load_progress
        # Every mode maps the file. Repacked (in memory, fast kernels): weights are copied into
        # anonymous memory for the fastest kernels, then our now-redundant mapping of them is
        # dropped (RSS ~1x the file; reading the file without mmap instead loads 2-7x slower).
        # Not repacked (file-backed, or the safe kernels): llama.cpp computes on the mapped
        # pages themselves, which stay evictable and re-readable.
        model_params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP
        model_params.use_extra_bufts = repack
        # EXPERTS_MAPPED: the weights every token uses are repacked, the experts stay mapped.
        self.overrides = repack_overrides(info, llama_system_info()) if layout is WeightLayout.EXPERTS_MAPPED else None
        if self.overrides is not None:
            model_params.tensor_buft_overrides = self.overrides.pointer()
        try:
            self.model = self._stack.enter_context(
                closing(_internals.LlamaModel(path_model=str(info.path), params=model_params, verbose=False))
            )
        except ValueError:
            reason = llama_log.last_error() or "no reason given"
            raise ModelLoadError(f"llama.cpp could not load {info.path.name}: {reason}") from None
        if repack:
            drop_mapped_pages(info.path)  # the pages of the last tensors loaded
        elif self.overrides is not None:
            drop_file_ranges(info.path, self.copied_ranges)
        self._cb_eval = cb_eval  # keep the ctypes callback alive as long as the context
        self.ctx = self._stack.enter_context(closing(self._make_context(config, cb_eval, cb_eval_user_data)))
        self.n_batch = config.batch
        self.batch = self._stack.enter_context(
            closing(_internals.LlamaBatch(n_tokens=config.batch, embd=0, n_seq_max=1, verbose=False))
        )
        self.vocab = self.model.vocab
        self.n_ctx = self.ctx.n_ctx()
        self._abort = threading.Event()
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: self._abort.is_set())

    @staticmethod
    def _progress_callback(info: ModelInfo, repack: bool, on_load_progress):
        """llama.cpp calls this before each tensor it loads, on the loading thread.

        Repacking copies every tensor out of the mapping; dropping the mapped pages as the
        load goes keeps peak RSS near 1x the file instead of 2x.
        """

        def on_progress(fraction: float, _user_data) -> bool:
            try:
                if repack:
                    drop_mapped_pages(info.path)
                if on_load_progress is not None:
                    on_load_progress(fraction)
            except Exception:  # must not cross into C; a failed report must not fail the load
                pass
            return True

        return llama_cpp.llama_progress_callback(on_progress)

    def _make_context(self, config: EngineConfig, cb_eval, cb_eval_user_data) -> _internals.LlamaContext:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = config.n_ctx
        params.n_batch = params.n_ubatch = config.batch
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = config.threads
        params.type_k = params.type_v = _GGML_TYPES[config.kv_type]
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if config.flash_attention_on
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.swa_full = config.full_window_cache  # off: sliding-window layers keep only their window
        params.no_perf = True
        if cb_eval is not None:
            params.cb_eval = cb_eval
            params.cb_eval_user_data = cb_eval_user_data
        try:
            return _internals.LlamaContext(model=self.model, params=params, verbose=False)
        except ValueError:
            reason = llama_log.last_error() or "not enough memory for this context length?"
            raise ModelLoadError(f"llama.cpp could not create a context of {config.n_ctx} tokens: {reason}") from None

    @property
    def copied_ranges(self) -> list[tuple[int, int]]:
        """(file offset, bytes) of the weights llama.cpp copied out of the mapping into memory
        of its own (in the EXPERTS_MAPPED layout): their file pages are no longer the model's."""
        return [(t.offset, t.nbytes) for t in self.overrides.tensors] if self.overrides is not None else []

    @property
    def copied_weight_bytes(self) -> int:
        return sum(nbytes for _, nbytes in self.copied_ranges)

    def close(self) -> None:
        self._stack.close()

    # --- tokens -------------------------------------------------------------------
    def tokenize(self, text: str, at_start: bool = True) -> list[int]:
        """Token ids of `text`, special tokens parsed; BOS only `at_start` and if the model wants one."""
        add_bos = at_start and llama_cpp.llama_vocab_get_add_bos(self.vocab)
        return self.model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        # Not _internals' token_to_piece: it returns its whole buffer, NUL padding included.
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[: max(n, 0)]

    def token_text(self, token: int) -> str:
        return self.token_bytes(token, special=True).decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    # --- evaluation -----------------------------------------------------------------
    def decode(self, tokens: Sequence[int], start: int, cancel: threading.Event | None = None) -> None:
        """Evaluate `tokens` at positions start.. in sequence 0, logits for the last one.

        With `cancel`, a long batch can be aborted part-way: DecodeAbortedError is raised and
        the cache keeps what llama.cpp finished (see `pos_max`).
        """
        for offset in range(0, len(tokens), self.n_batch):
            piece = tokens[offset : offset + self.n_batch]
            self.batch.set_batch(piece, n_past=start + offset, logits_all=False)
            if cancel is not None:
                if cancel.is_set():
                    raise DecodeAbortedError
                self._watch(cancel)
            try:
                status = llama_cpp.llama_decode(self.ctx.ctx, self.batch.batch)
            finally:
                if cancel is not None:
                    self._watch(None)
            if status == 2:
                raise DecodeAbortedError
            if status != 0:
                raise DecodeError(f"llama.cpp failed to evaluate the prompt (status {status})")

    def _watch(self, cancel: threading.Event | None) -> None:
        # The abort callback runs once per graph node; only worth it for multi-token batches.
        if cancel is None:
            llama_cpp.llama_set_abort_callback(self.ctx.ctx, _NO_ABORT, None)
        else:
            self._abort = cancel
            llama_cpp.llama_set_abort_callback(self.ctx.ctx, self._abort_cb, None)

    def make_sampler(self, sampling: SamplingParams, seed: int) -> _internals.LlamaSampler:
        sampler = _internals.LlamaSampler()
        if sampling.temperature <= 0:
            sampler.add_greedy()
            return sampler
        if sampling.top_k > 0:
            sampler.add_top_k(sampling.top_k)
        sampler.add_top_p(sampling.top_p, 1)
        sampler.add_temp(sampling.temperature)
        sampler.add_dist(seed)
        return sampler

    # --- the KV cache of sequence 0 -----------------------------------------------------
    @property
    def _memory(self):
        return llama_cpp.llama_get_memory(self.ctx.ctx)

    def pos_min(self) -> int:
        return llama_cpp.llama_memory_seq_pos_min(self._memory, SEQ)

    def pos_max(self) -> int:
        return llama_cpp.llama_memory_seq_pos_max(self._memory, SEQ)

    def truncate(self, keep: int) -> bool:
        """Drop positions >= keep; False when the cache cannot (then it is cleared)."""
        if llama_cpp.llama_memory_seq_rm(self._memory, SEQ, keep, -1):
            return True
        llama_cpp.llama_memory_clear(self._memory, True)
        return False

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self._memory, True)

    def save_state(self) -> bytes:
        size = llama_cpp.llama_state_seq_get_size(self.ctx.ctx, SEQ)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.ctx.ctx, buf, size, SEQ)
        return bytes(memoryview(buf)[:written])

    def restore_state(self, state: bytes) -> bool:
        self.clear()
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(self.ctx.ctx, buf, len(state), SEQ) == 0:
            self.clear()
            return False
        return True
