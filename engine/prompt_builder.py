"""Turn a conversation into prompt tokens that fit the context, dropping old turns if needed."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from engine.chat_template import ChatTemplate
from engine.errors import EngineError

Messages = Sequence[Mapping[str, str]]
_MARK = "\x00"  # cannot occur in text a person typed into a chat


class ContextOverflowError(EngineError, ValueError):
    """Even the system prompt and the last message do not fit the context."""


@dataclass(frozen=True)
class PreparedPrompt:
    tokens: list[int]
    trimmed_messages: int  # oldest non-system messages dropped to fit


class PromptEncoder:
    """Renders a conversation with the chat template and tokenizes it.

    Answers the engine generated itself are put back as the token ids it sampled, not
    re-tokenized: re-tokenizing a model's text can give other ids, which would break the
    common prefix with the KV cache and re-compute the whole answer on the next turn.
    """

    def __init__(
        self, template: ChatTemplate, tokenize: Callable[[str, bool], list[int]], *, remember: int = 64
    ) -> None:
        self.template = template
        self._tokenize = tokenize  # (text, add_bos) -> ids
        self._answers: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._remember = remember

    def remember_answer(self, text: str, tokens: Sequence[int]) -> None:
        if not text or not tokens:
            return
        self._answers.pop(text, None)
        self._answers[text] = tuple(tokens)
        while len(self._answers) > self._remember:
            self._answers.popitem(last=False)

    def encode(self, messages: Messages) -> list[int]:
        known = {
            i: self._answers[m["content"]]
            for i, m in enumerate(messages)
            if m.get("role") == "assistant" and m.get("content") in self._answers
        }
        if known and not any(_MARK in m.get("content", "") for m in messages):
            marked = [dict(m, content=f"{_MARK}{i}{_MARK}") if i in known else m for i, m in enumerate(messages)]
            parts = self.template.render(marked).split(_MARK)
            if len(parts) == 2 * len(known) + 1:  # the template kept every marker intact
                tokens: list[int] = []
                for j, part in enumerate(parts):
                    if j % 2:
                        tokens += known[int(part)]
                    elif part:
                        tokens += self._tokenize(part, j == 0)
                return tokens
        return self._tokenize(self.template.render(messages), True)


def build_prompt(
    encode: Callable[[Messages], list[int]], messages: Messages, *, n_ctx: int, reserve: int
) -> PreparedPrompt:
    """Encode `messages`, leaving `reserve` tokens of room for the answer.

    When the conversation is too long, whole turns are dropped from the front (a user
    message and the answers after it), keeping the leading system messages, so the
    roles still alternate the way chat templates expect.
    """
    if not messages:
        raise EngineError("a chat needs at least one message")
    n_system = 0
    while n_system < len(messages) and messages[n_system].get("role") == "system":
        n_system += 1
    system, rest = list(messages[:n_system]), list(messages[n_system:])
    trimmed = 0
    while True:
        tokens = encode(system + rest)
        if len(tokens) + reserve <= n_ctx:
            return PreparedPrompt(tokens, trimmed)
        if len(rest) <= 1:
            raise ContextOverflowError(
                f"The message needs {len(tokens):,} tokens plus {reserve:,} for the answer, but the context holds "
                f"{n_ctx:,}. Shorten the message or the system prompt, or raise the context length in Settings."
            )
        drop = 1
        while drop < len(rest) - 1 and rest[drop].get("role") != "user":
            drop += 1
        rest = rest[drop:]
        trimmed += drop
