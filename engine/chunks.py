"""What `Engine.stream_chat` yields: small immutable values, safe to pass between threads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FinishReason(StrEnum):
    STOP = "stop"  # the model ended its answer
    LENGTH = "length"  # max_tokens reached
    CANCELLED = "cancelled"
    CONTEXT_FULL = "context-full"  # the context has no room for another token


@dataclass(frozen=True)
class ChatStats:
    tokens_in: int  # prompt tokens after any trimming
    tokens_out: int
    reused_tokens: int  # prompt tokens whose KV cache was reused
    prefill_tokens: int  # prompt tokens computed for this answer
    ttft_seconds: float  # from the call to the first token
    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    context_used: int  # tokens in the context when the answer ended
    context_length: int
    trimmed_messages: int  # oldest messages dropped to fit the context


@dataclass(frozen=True)
class Chunk:
    """One generated token's text (maybe empty mid-character), or the final chunk."""

    text: str
    finish_reason: FinishReason | None = None  # set on the last chunk only
    stats: ChatStats | None = None  # set on the last chunk only
    notice: str = ""  # e.g. why messages were trimmed; for the user to read

    @property
    def is_final(self) -> bool:
        return self.finish_reason is not None
