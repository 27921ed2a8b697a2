"""An engine that answers through another OpenAI-compatible server instead of this computer.

For a user who outgrows the laptop: the chat, regenerate, stop and summaries run against
any OpenAI-compatible endpoint (llama.cpp's server, vLLM, another SmallThinker Desktop),
with the official `openai` client. It offers what the window and the summariser use of the
local engine (`stream_chat`, `n_ctx`, token counts); the speed figures come from the stream.
The API has no tokenizer, so token counts are a conservative estimate (3 bytes a token;
real tokenizers average about 4 characters of English), which only makes summary sections
smaller than they could be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import openai

from app.errors import AppError
from engine.chunks import ChatStats, Chunk, FinishReason
from engine.config import SamplingParams

_BYTES_PER_TOKEN = 3
_MESSAGE_OVERHEAD_TOKENS = 8  # the chat template's markers around each message
_CONNECT_TIMEOUT_S = 10.0
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


class RemoteEngineError(AppError):
    """The server could not be reached or refused; the message says which and what to do."""


@dataclass(frozen=True)
class RemoteInfo:
    name: str  # the model's name on the server
    base_url: str


class RemoteEngine:
    def __init__(self, base_url: str, api_key: str = "", model: str = "", *, n_ctx: int = 8192) -> None:
        """Connect (list the server's models): an unreachable server or a wrong key raises
        RemoteEngineError now, not at the first message."""
        self.base_url = base_url.rstrip("/")
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise RemoteEngineError(f"“{base_url}” is not a server address: it should look like http://host:8000/v1")
        self.n_ctx = n_ctx
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "none", max_retries=0, timeout=_CONNECT_TIMEOUT_S
        )
        models = self._call(lambda: [m.id for m in self._client.models.list()])
        if model and models and model not in models:
            raise RemoteEngineError(f"the server at {self.base_url} has no model “{model}”; it has {', '.join(models)}")
        if not model and not models:
            raise RemoteEngineError(f"the server at {self.base_url} lists no model; name one in Settings > Server")
        self.model = model or models[0]
        self.info = RemoteInfo(self.model, self.base_url)
        self._client = self._client.with_options(timeout=None)  # an answer may take minutes

    # --- what the window and the summariser use ------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Not the server's tokens: as many placeholders as the estimate counts."""
        return [0] * (len(text.encode("utf-8")) // _BYTES_PER_TOKEN + 1)

    def encode_conversation(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        return [token for m in messages for token in self.tokenize(m["content"]) + [0] * _MESSAGE_OVERHEAD_TOKENS]

    def stream_chat(
        self,
        messages: Sequence[Mapping[str, str]],
        sampling: SamplingParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Chunk]:
        sampling = sampling or SamplingParams()
        cancel = cancel or threading.Event()
        started = time.perf_counter()
        stream = self._call(
            lambda: self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": m["role"], "content": m["content"]} for m in messages],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
                extra_body={"top_k": sampling.top_k},  # not OpenAI's, but llama.cpp's servers and ours take it
            )
        )
        return self._chunks(stream, messages, cancel, started)

    def _chunks(self, stream, messages, cancel: threading.Event, started: float) -> Iterator[Chunk]:
        pieces, first, last = 0, None, None
        finish, usage = FinishReason.STOP, None
        try:
            for event in self._iterate(stream):
                if cancel.is_set():
                    finish = FinishReason.CANCELLED
                    break
                usage = event.usage or usage
                if not event.choices:
                    continue
                choice = event.choices[0]
                if choice.delta and choice.delta.content:
                    last = time.perf_counter()
                    first = first or last
                    pieces += 1
                    yield Chunk(choice.delta.content)
                if choice.finish_reason:
                    finish = _FINISH.get(choice.finish_reason, FinishReason.STOP)
        finally:
            stream.close()  # a stopped answer: the server sees the disconnect and stops too
        prompt = usage.prompt_tokens if usage else len(self.encode_conversation(messages))
        out = usage.completion_tokens if usage and finish is not FinishReason.CANCELLED else pieces
        details = getattr(usage, "prompt_tokens_details", None)
        reused = (getattr(details, "cached_tokens", None) or 0) if details else 0
        ttft = (first or time.perf_counter()) - started
        decode = (pieces - 1) / (last - first) if first and last and last > first else 0.0
        yield Chunk(
            "",
            finish_reason=finish,
            stats=ChatStats(
                tokens_in=prompt,
                tokens_out=out,
                reused_tokens=reused,
                prefill_tokens=prompt - reused,
                ttft_seconds=ttft,
                prefill_tokens_per_second=(prompt - reused) / ttft if ttft > 0 else 0.0,
                decode_tokens_per_second=decode,
                context_used=prompt + out,
                context_length=self.n_ctx,
                trimmed_messages=0,
            ),
        )

    def memory_report(self, *, fresh: bool = True):
        return None  # nothing of the model is in this computer's memory

    def close(self) -> None:
        self._client.close()

    # --- errors in words ---------------------------------------------------------------------------
    def _call(self, request):
        try:
            return request()
        except openai.APIError as exc:
            raise self._explain(exc) from None

    def _iterate(self, stream):
        try:
            yield from stream
        except openai.APIError as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: openai.APIError) -> RemoteEngineError:
        where = self.base_url
        if isinstance(exc, openai.APIConnectionError):
            return RemoteEngineError(f"cannot reach the server at {where}: is it running, and is the address right?")
        if isinstance(exc, openai.AuthenticationError):
            return RemoteEngineError(f"the server at {where} refused the API key; check it in Settings > Server")
        message = getattr(exc, "message", str(exc))
        status = getattr(exc, "status_code", None)
        return RemoteEngineError(f"the server at {where} answered {status or 'with an error'}: {message}")
