"""The chat engine: a SmallThinker GGUF on llama.cpp, streamed, with its KV cache reused.

Synchronous and thread-agnostic: the UI runs it on a worker thread of its own and
cancels through a threading.Event checked between tokens (and, during a long prefill,
inside llama.cpp through its abort callback).
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from engine.chat_template import ChatTemplate, ChatTemplateError, check_chat_template
from engine.chunks import ChatStats, Chunk, FinishReason
from engine.config import EngineConfig, Kernels, MemoryMode, SamplingParams
from engine.conversation_cache import ConversationCacheStore, common_prefix_length
from engine.errors import EngineError, ModelLoadError
from engine.experts import page_control
from engine.experts.history import history_file
from engine.experts.manager import ExpertManager, ExpertStats
from engine.experts.map import expert_map
from engine.experts.router_hook import RouterHook
from engine.kernel_check import kernel_verdict
from engine.kv_layout import KvLayout, kv_layout
from engine.llama_runtime import DecodeAbortedError, LlamaRuntime
from engine.memory_plan import choose_memory_mode, managed_weights_budget
from engine.memory_report import MemoryReport, process_rss
from engine.model_info import ModelInfo, inspect_model
from engine.model_trial import check_model_loads
from engine.prompt_builder import ContextOverflowError, PreparedPrompt, PromptEncoder, build_prompt
from engine.weight_layout import WeightLayout

log = logging.getLogger(__name__)

# A live cache that diverges from the new prompt by this many tokens is worth saving.
_SAVE_MIN_DIVERGENT = 32


class EngineBusyError(EngineError, RuntimeError):
    """A second chat was started while one is still streaming."""


@dataclass(frozen=True)
class ChatResult:
    text: str
    finish_reason: FinishReason
    stats: ChatStats
    notice: str


class Engine:
    def __init__(
        self,
        model_path: str | Path,
        config: EngineConfig | None = None,
        *,
        cb_eval=None,
        cb_eval_user_data=None,
        on_load_progress: Callable[[float], None] | None = None,
        checked: ModelInfo | None = None,
    ) -> None:
        """`checked`: what `Engine.preflight(model_path, config)` returned, when the caller ran
        it already (the window does, before unloading its model), so it is not done twice."""
        self.config = config or EngineConfig()
        if checked is not None:
            self.config.check()
            self.info = checked
        else:
            self.info = self.preflight(model_path, self.config)
        self.kv: KvLayout = kv_layout(
            self.info,
            self.config.n_ctx,
            self.config.batch,
            self.config.kv_type,
            full_window=self.config.full_window_cache,
        )
        self.memory_mode = choose_memory_mode(self.info, self.config, self.kv.total_bytes)
        self.kernels, self.kernel_note = self._choose_kernels()
        self.experts = self._expert_manager()
        if self.experts is not None:
            if cb_eval is not None:
                raise EngineError("an eval callback cannot be combined with the expert manager")
            self._router_hook = RouterHook(self.experts.map, self.experts)
            cb_eval = self._router_hook.callback
            cb_eval_user_data = self._router_hook.callback_data
        started = time.perf_counter()
        self._rt = LlamaRuntime(
            self.info,
            self.config,
            layout=self.layout,
            cb_eval=cb_eval,
            cb_eval_user_data=cb_eval_user_data,
            on_load_progress=on_load_progress,
        )
        if self.experts is not None:
            self._attach_experts()
        self.load_seconds = time.perf_counter() - started
        self.template = ChatTemplate(self.info.chat_template, eos_token=self._rt.token_text(self._eos()))
        self._encoder = PromptEncoder(self.template, self._rt.tokenize)
        self.model_bytes = int(llama_cpp.llama_model_size(self._rt.model.model))
        self._mappings = [] if self.repacked else page_control.mappings_of(self.info.path)
        self._tokens: list[int] = []  # what sequence 0 of the KV cache holds
        self.tokens_generated = 0  # over the engine's life: live speed panels take differences
        self._store = ConversationCacheStore(
            max_entries=self.config.saved_conversations,
            max_bytes=self.config.saved_conversation_bytes,
            folder=self._cache_folder(),
        )
        self._lock = threading.Lock()
        log.info("loaded %s (%s) in %.2f s", self.info.path.name, self.memory_mode.value, self.load_seconds)

    @staticmethod
    def preflight(model_path: str | Path, config: EngineConfig) -> ModelInfo:
        """Every check a file must pass before llama.cpp loads it in this process: the header
        and shapes, the chat template (code from the file), and a trial load in a child
        process. Cheap after the first time; the window runs it before unloading the model
        it has, so that a bad file leaves the working one loaded."""
        config.check()
        info = inspect_model(model_path)
        try:
            check_chat_template(info.chat_template)  # it is code from the file: try it before llama.cpp
        except ChatTemplateError as exc:
            raise ModelLoadError(f"{info.path.name} cannot be used: {exc}") from None
        if config.trial_load:
            check_model_loads(info.path, config.kernel_check_dir)
        return info

    def _choose_kernels(self) -> tuple[Kernels, str]:
        """The configured kernels, or (AUTO) what the kernel check found safe on this CPU."""
        if self.config.kernels is not Kernels.AUTO:
            return self.config.kernels, ""
        verdict = kernel_verdict(self.config.kernel_check_dir)
        if verdict.kernels is None:
            raise ModelLoadError(
                f"llama.cpp cannot run on this processor: {verdict.reason}. "
                "Reinstalling the app (or `make clean` then `make run` from source) rebuilds it for this CPU."
            )
        return verdict.kernels, verdict.reason

    @property
    def layout(self) -> WeightLayout:
        """In memory, everything in llama.cpp's fastest layout; file-backed, the experts stay
        on the mapped file (evictable) and the rest is repacked. The safe kernels repack nothing."""
        if self.kernels is not Kernels.FAST:
            return WeightLayout.MAPPED
        if self.memory_mode is MemoryMode.IN_MEMORY:
            return WeightLayout.REPACKED
        return WeightLayout.EXPERTS_MAPPED

    @property
    def repacked(self) -> bool:
        """Every weight copied into llama.cpp's fastest layout (in memory, the fast kernels)."""
        return self.layout is WeightLayout.REPACKED

    def _expert_manager(self) -> ExpertManager | None:
        budget = managed_weights_budget(self.info, self.config, self.kv.total_bytes, self.memory_mode)
        if budget is None:
            return None
        folder = self.config.expert_history_dir
        return ExpertManager(
            self.info,
            expert_map(self.info),
            budget,
            prefetch=self.config.expert_prefetch,
            policy=self.config.expert_policy,
            lookahead=self.config.expert_lookahead,
            read_method=self.config.expert_read_method,
            history_path=history_file(folder, self.info) if folder is not None else None,
        )

    def _attach_experts(self) -> None:
        first = min(t.offset for t in self.info.tensors.values())
        span = self.info.file_size - first
        mappings = [m for m in page_control.mappings_of(self.info.path) if m.covers(first, span)]
        try:
            if not mappings:
                raise EngineError(f"llama.cpp's mapping of {self.info.path.name} was not found")
            self.experts.attach(mappings[0], copied=self._rt.copied_ranges)
            if self.experts.positioned:
                self._point_expert_tensors()
        except BaseException:
            self.experts.close()
            self._rt.close()
            raise

    def _point_expert_tensors(self) -> None:
        """Point llama.cpp's expert tensors at the manager's positions, through one throwaway
        evaluation (RouterHook.point_expert_tensors says why); or read experts into place."""
        token = max(0, llama_cpp.llama_vocab_eos(self._rt.vocab))
        try:
            pointed = self._router_hook.point_expert_tensors(lambda: self._rt.decode([token], 0))
        finally:
            self._rt.clear()
        if not pointed:
            self.experts.positions_unavailable()

    def expert_stats(self) -> ExpertStats | None:
        """The expert cache's figures; None when the model is not run within a budget."""
        return self.experts.stats() if self.experts is not None else None

    def _eos(self) -> int:
        return llama_cpp.llama_vocab_eos(self._rt.vocab)

    def _cache_folder(self) -> Path | None:
        if self.config.conversation_cache_dir is None:
            return None
        stat = self.info.path.stat()
        identity = f"{self.info.path}|{stat.st_size}|{stat.st_mtime_ns}|{self.config.kv_type.value}"
        return self.config.conversation_cache_dir / hashlib.sha1(identity.encode()).hexdigest()[:16]

    @property
    def n_ctx(self) -> int:
        return self._rt.n_ctx

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` with the model's tokenizer (special tokens parsed)."""
        return self._rt.tokenize(text)

    def encode_conversation(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The prompt tokens `stream_chat` would evaluate for `messages` (before any trimming)."""
        return self._encoder.encode(messages)

    def render_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text the chat template makes of `messages`, ready for an answer."""
        return self.template.render(messages)

    @property
    def cached_tokens(self) -> int:
        """Tokens in the live KV cache."""
        return len(self._tokens)

    @property
    def saved_conversations(self) -> int:
        """Conversation caches kept besides the live one."""
        return len(self._store)

    # --- chat ---------------------------------------------------------------------------
    def chat(self, messages, sampling: SamplingParams | None = None, cancel=None) -> ChatResult:
        """The whole answer at once: `stream_chat` joined."""
        parts = []
        for chunk in self.stream_chat(messages, sampling, cancel):
            parts.append(chunk.text)
            if chunk.is_final:
                return ChatResult("".join(parts), chunk.finish_reason, chunk.stats, chunk.notice)
        raise EngineError("the stream ended without a final chunk")  # pragma: no cover - a bug if reached

    def stream_chat(
        self,
        messages: Sequence[Mapping[str, str]],
        sampling: SamplingParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Chunk]:
        """Stream the answer to `messages`; the last chunk carries finish reason and stats."""
        sampling = sampling or SamplingParams()
        reserve = min(sampling.max_tokens, self.n_ctx // 4)
        return self._locked_stream(
            lambda: build_prompt(self._encoder.encode, messages, n_ctx=self.n_ctx, reserve=reserve), sampling, cancel
        )

    def stream_prompt(
        self,
        prompt_tokens: Sequence[int],
        sampling: SamplingParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Chunk]:
        """Continue raw prompt tokens (already chat-formatted or not), like `stream_chat`."""
        sampling = sampling or SamplingParams()

        def prepare() -> PreparedPrompt:
            if not 0 < len(prompt_tokens) < self.n_ctx:
                raise ContextOverflowError(f"a prompt of {len(prompt_tokens):,} tokens does not fit {self.n_ctx:,}")
            return PreparedPrompt(list(prompt_tokens), 0)

        return self._locked_stream(prepare, sampling, cancel)

    def _locked_stream(self, prepare, sampling: SamplingParams, cancel) -> Iterator[Chunk]:
        sampling.check()
        cancel = cancel or threading.Event()
        if not self._lock.acquire(blocking=False):
            raise EngineBusyError("the engine is already answering; stop that answer first")
        try:
            started = time.perf_counter()
            yield from self._stream(prepare(), sampling, cancel, started)
        finally:
            self._lock.release()

    def _stream(self, prompt: PreparedPrompt, sampling, cancel, started: float) -> Iterator[Chunk]:
        notice = (
            f"The conversation was longer than the context; the oldest {prompt.trimmed_messages} "
            "messages were left out of this answer."
            if prompt.trimmed_messages
            else ""
        )
        reused = self._reuse_cache(prompt.tokens)
        new_tokens = prompt.tokens[reused:]
        prefill_started = time.perf_counter()
        try:
            self._rt.decode(new_tokens, start=reused, cancel=cancel)
        except DecodeAbortedError:
            self._tokens = list(prompt.tokens[: self._rt.pos_max() + 1])
            timing = _Timing(started, prefill_started, time.perf_counter())
            yield self._final("", FinishReason.CANCELLED, prompt, reused, 0, timing, notice)
            return
        self._tokens = list(prompt.tokens)
        timing = _Timing(started, prefill_started, time.perf_counter())
        yield from self._generate(sampling, cancel, prompt, reused, timing, notice)

    def _generate(self, sampling, cancel, prompt, reused, timing, notice) -> Iterator[Chunk]:
        seed = sampling.seed if sampling.seed is not None else random.randrange(2**31)
        sampler = self._rt.make_sampler(sampling, seed)
        text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        answer_tokens: list[int] = []
        answer_text: list[str] = []
        try:
            while True:
                if cancel.is_set():
                    finish = FinishReason.CANCELLED
                    break
                token = sampler.sample(self._rt.ctx, -1)
                timing.token_sampled()
                self.tokens_generated += 1
                if self._rt.is_end_of_generation(token):
                    finish = FinishReason.STOP
                    break
                answer_tokens.append(token)
                # One chunk per token, its text empty while a character's bytes are incomplete.
                text = text_decoder.decode(self._rt.token_bytes(token))
                answer_text.append(text)
                yield Chunk(text)
                if len(answer_tokens) >= sampling.max_tokens:
                    finish = FinishReason.LENGTH
                    break
                if len(self._tokens) >= self.n_ctx:
                    finish = FinishReason.CONTEXT_FULL
                    break
                self._rt.decode([token], start=len(self._tokens))
                self._tokens.append(token)
        finally:
            sampler.close()
        tail = text_decoder.decode(b"", final=True)
        self._encoder.remember_answer("".join(answer_text) + tail, answer_tokens)
        yield self._final(tail, finish, prompt, reused, len(answer_tokens), timing, notice)

    def _final(self, text, finish, prompt, reused, n_out, timing, notice) -> Chunk:
        prefill_tokens = len(prompt.tokens) - reused
        stats = ChatStats(
            tokens_in=len(prompt.tokens),
            tokens_out=n_out,
            reused_tokens=reused,
            prefill_tokens=prefill_tokens,
            ttft_seconds=timing.ttft,
            prefill_tokens_per_second=prefill_tokens / timing.prefill_seconds if timing.prefill_seconds > 0 else 0.0,
            decode_tokens_per_second=timing.decode_rate(),
            context_used=len(self._tokens),
            context_length=self.n_ctx,
            trimmed_messages=prompt.trimmed_messages,
        )
        return Chunk(text, finish_reason=finish, stats=stats, notice=notice)

    # --- KV cache reuse -------------------------------------------------------------------
    def _reuse_cache(self, prompt_tokens: list[int]) -> int:
        """Bring the best cache for `prompt_tokens` into sequence 0; return how many tokens it covers."""
        prompt = np.asarray(prompt_tokens, dtype=np.int32)
        live = np.asarray(self._tokens, dtype=np.int32)
        keep = common_prefix_length(live, prompt)
        saved, saved_keep = self._store.best_match(prompt)
        switching = saved is not None and saved_keep > keep
        divergent = len(live) - keep  # live tokens this prompt would discard
        if divergent >= _SAVE_MIN_DIVERGENT or (switching and divergent > 0):
            self._store.put(live, self._rt.save_state())
        if switching:
            state = self._store.take(saved)
            if state is not None and self._rt.restore_state(state):
                self._tokens, keep = saved.tokens.tolist(), saved_keep
            else:
                self._tokens, keep = [], 0
        keep = min(keep, len(prompt_tokens) - 1)  # the last prompt token must be evaluated for logits
        if keep < len(self._tokens):
            if not self._can_roll_back_to(keep) or not self._rt.truncate(keep):
                self._rt.clear()
                keep = 0
            self._tokens = self._tokens[:keep]
        return keep

    def _can_roll_back_to(self, keep: int) -> bool:
        """Sliding-window layers forget old positions; a rollback needs the window before `keep`."""
        if self.info.sliding_window is None:
            return True
        return self._rt.pos_min() <= max(0, keep - self.info.sliding_window)

    def forget_conversations(self) -> None:
        """Drop the live cache (saved ones stay)."""
        self._rt.clear()
        self._tokens = []

    # --- reports and lifetime ---------------------------------------------------------------
    def memory_report(self, *, fresh: bool = True) -> MemoryReport:
        """Where memory is. `fresh=False` takes the expert manager's last measurement of the
        model's resident bytes instead of a new mincore pass (20 ms for the 4B, 100 for the 21B)."""
        rss, anon, file_backed = process_rss()
        stats = self.experts.stats() if self.experts is not None else None
        if stats is not None and not fresh and stats.resident_bytes is not None:
            resident = stats.resident_bytes
        elif not self.repacked:  # llama.cpp computes on the mapped file's pages (and its copies)
            resident = self._mapped_resident_bytes() if self._mappings else None
        else:
            resident = self.model_bytes  # read into anonymous memory at load
        return MemoryReport(
            rss_bytes=rss,
            rss_anon_bytes=anon,
            rss_file_bytes=file_backed,
            model_bytes=self.model_bytes,
            model_resident_bytes=resident,
            model_file_backed=not self.repacked,
            kv_bytes=self.kv.total_bytes,
            kv_global_bytes=self.kv.global_bytes,
            kv_window_bytes=self.kv.window_bytes,
            weights_budget_bytes=stats.budget_bytes if stats is not None else None,
            expert_hit_rate=stats.hit_rate if stats is not None and stats.hits + stats.misses else None,
        )

    def _mapped_resident_bytes(self) -> int:
        """The mapping's resident pages, less those of weights llama.cpp copied out, plus the copies."""
        resident = 0
        for mapping in self._mappings:
            copies = [
                page_control.pages_inside(mapping.address(offset), nbytes)
                for offset, nbytes in self._rt.copied_ranges
                if mapping.covers(offset, nbytes)
            ]
            resident += page_control.resident_bytes_outside(mapping.start, mapping.end, copies)
        unmapped = self.experts.unmapped_bytes if self.experts is not None else 0
        return resident + self._rt.copied_weight_bytes + unmapped

    def close(self) -> None:
        if self._store.folder is not None and self._tokens:
            self._store.put(np.asarray(self._tokens, dtype=np.int32), self._rt.save_state())
        if self.experts is not None:
            self.experts.close()
        self._rt.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Timing:
    def __init__(self, started: float, prefill_started: float, prefill_ended: float) -> None:
        self.started = started
        self.prefill_seconds = prefill_ended - prefill_started
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.n_sampled = 0

    def token_sampled(self) -> None:
        now = time.perf_counter()
        if self.first_token is None:
            self.first_token = now
        self.last_token = now
        self.n_sampled += 1

    @property
    def ttft(self) -> float:
        return (self.first_token or time.perf_counter()) - self.started

    def decode_rate(self) -> float:
        if self.n_sampled < 2 or self.last_token == self.first_token:
            return 0.0
        return (self.n_sampled - 1) / (self.last_token - self.first_token)
