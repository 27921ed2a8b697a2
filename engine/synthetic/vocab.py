"""A byte-level BPE vocabulary in the Qwen2 layout for synthetic models.

The point is not good compression but the same code path as the real files: GPT-2
byte-level tokens, real merges (so English text shortens and chunk sizes in tokens are
realistic), the ChatML special tokens at the places the real vocabulary has them, and a
ChatML chat template. Generated token ids are random, so the filler tokens are made of
pronounceable syllables: gibberish, but visible text in a chat view.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.synthetic.shapes import SyntheticShape

# gguf TokenType values
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# The ChatML template the SmallThinker GGUFs carry, without their default system prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS_TEXT = (
    "the of and to in is that it for was on are as with be at by this have from or one had "
    "not but what all were when we there can an your which their said if do will each about "
    "how up out them then she many some so these would other into has more her two like him "
    "see time could no make than first been its who now people my made over did down only "
    "way find use may water long little very after words called just where most know get "
    "through back much before go good new write our used me man too any day same right look "
    "think also around another came come work three word must because does part even place "
    "well such here take why things help put years different away again off went old number "
    "great tell men say small every found still between name should home big give air line "
    "set own under read last never us left end along while might next sound below saw "
    "something thought both few those always looked show large often together asked house "
    "world going want school important until form food keep children feet land side without "
    "boy once animals life enough took sometimes four head above kind began almost live page "
    "got earth need far hand high year mother light parts country father let night following "
    "picture being study second eyes soon times story boys since white days ever paper hard "
    "near sentence better best across during today others sure means knew however summary "
    "document model section chapter report answer question data memory speed language "
)
_COMMON_WORDS = tuple(_WORDS_TEXT.split())

_CONSONANTS = "bdfghjklmnprstvz"
_VOWELS = "aeiou"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


@dataclass(frozen=True)
class SyntheticVocab:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    eos_id: int  # <|im_end|>
    endoftext_id: int
    im_start_id: int


def _merge_path(word: str, tokens: dict[str, int], merges: list[str]) -> list[str]:
    """Left-to-right merges that build `word` from its characters; returns new tokens."""
    new_tokens = []
    current = word[0]
    for ch in word[1:]:
        merged = current + ch
        if merged not in tokens:
            merges.append(f"{current} {ch}")
            tokens[merged] = len(tokens)
            new_tokens.append(merged)
        current = merged
    return new_tokens


def _syllable_words():
    """An endless, deterministic stream of distinct pseudo-words (' bako', ' tesu', ...)."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    length = 1
    while True:
        for index in range(len(syllables) ** length):
            parts = []
            for _ in range(length):
                index, rem = divmod(index, len(syllables))
                parts.append(syllables[rem])
            yield "Ġ" + "".join(parts)
        length += 1


def build_vocab(shape: SyntheticShape) -> SyntheticVocab:
    byte_chars = list(bytes_to_unicode().values())
    tokens: dict[str, int] = {ch: i for i, ch in enumerate(byte_chars)}
    merges: list[str] = []
    budget = shape.n_normal_tokens
    for word in _COMMON_WORDS:
        for candidate in (word, "Ġ" + word):
            if len(tokens) + len(candidate) > budget:
                break
            _merge_path(candidate, tokens, merges)
    fillers = _syllable_words()
    while len(tokens) < budget:
        word = next(fillers)
        if word not in tokens:
            tokens[word] = len(tokens)
    token_list = list(tokens)
    types = [NORMAL] * len(token_list)
    endoftext_id = len(token_list)
    for special in (ENDOFTEXT, IM_START, IM_END):
        token_list.append(special)
        types.append(CONTROL)
    while len(token_list) < shape.n_vocab:
        token_list.append(f"[PAD{len(token_list)}]")
        types.append(USER_DEFINED)
    return SyntheticVocab(
        tokens=token_list,
        token_types=types,
        merges=merges,
        eos_id=endoftext_id + 2,
        endoftext_id=endoftext_id,
        im_start_id=endoftext_id + 1,
    )
