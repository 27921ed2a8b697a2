"""What a SmallThinker GGUF is, checked before llama.cpp ever opens it.

llama.cpp aborts the process on some malformed files; everything it would trip over
(wrong architecture, missing tensors, tensors past the end of the file) is refused
here with a sentence a person can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelLoadError
from engine.gguf_file import TensorInfo, read_gguf

ARCH = "smallthinker"
SWA_PATTERN = 4  # llama.cpp's SmallThinker: layers 0, 4, 8, ... are global
SMALLTHINKER_SWA_WINDOW = 4096  # llama.cpp forces this window whatever the file says
LAYER_TENSORS = (
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
    "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
)  # fmt: skip


def is_global_layer(layer: int, sliding_window: int | None) -> bool:
    """Whether `layer` attends to the whole context (llama.cpp's SmallThinker pattern)."""
    return sliding_window is None or layer % SWA_PATTERN == 0


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    file_size: int
    name: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_expert: int
    n_expert_used: int
    n_vocab: int
    context_length: int
    sliding_window: int | None
    chat_template: str
    tensors: dict[str, TensorInfo]

    @property
    def n_global_layers(self) -> int:
        return sum(is_global_layer(i, self.sliding_window) for i in range(self.n_layer))


# Far above any SmallThinker (the 21B: 52 layers, 2560 wide, 64 experts) and below what
# makes llama.cpp or our own tables allocate gigabytes before anything is computed.
_LIMITS = {
    "block_count": 1024,
    "embedding_length": 65536,
    "attention.head_count": 1024,
    "attention.head_count_kv": 1024,
    "attention.key_length": 4096,
    "expert_count": 4096,
    "expert_used_count": 4096,
    "context_length": 1 << 24,
}


def _int_key(metadata: dict, name: str, path: Path, default: int | None = None) -> int:
    key = f"{ARCH}.{name}"
    value = metadata.get(key, default)
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        value = value[0]  # per-layer arrays with one value
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelLoadError(f"{path.name} lacks a valid '{key}' entry; it is not a usable SmallThinker model")
    if value > _LIMITS[name]:
        raise ModelLoadError(
            f"{path.name} says '{key}' is {value:,}, more than any SmallThinker model has "
            f"(at most {_LIMITS[name]:,} is accepted); the file is damaged or not a SmallThinker model"
        )
    return value


def _refuse(path: Path, problem: str):
    raise ModelLoadError(f"{path.name} is damaged or not a SmallThinker model: {problem}")


def _check_shapes(path: Path, n_embd: int, n_head: int, n_head_kv: int, n_expert: int, n_used: int, tensors) -> None:
    """What llama.cpp asserts (aborting the process) rather than reports, checked first."""
    if n_used > n_expert:
        _refuse(path, f"it routes each token to {n_used} experts but has only {n_expert}")
    if n_head % n_head_kv:
        _refuse(path, f"{n_head} attention heads cannot be shared by {n_head_kv} key/value heads")
    embd = tensors["token_embd.weight"].dims
    if len(embd) != 2 or embd[0] != n_embd:
        _refuse(path, f"the token embedding has shape {list(embd)}, not [{n_embd}, vocabulary]")
    router = tensors["blk.0.ffn_gate_inp.weight"].dims
    if router != (n_embd, n_expert):
        _refuse(path, f"the router has shape {list(router)}, not [{n_embd}, {n_expert}]")


def inspect_model(path: str | os.PathLike[str]) -> ModelInfo:
    """Validate `path` as a SmallThinker GGUF and describe it; raise `ModelLoadError` otherwise."""
    try:
        path = Path(path).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # Python 3.11 raises RuntimeError on a symlink loop
        raise ModelLoadError(f"{path} cannot be opened: {exc}") from None
    contents = read_gguf(path)
    meta = contents.metadata
    arch = meta.get("general.architecture")
    if arch != ARCH:
        raise ModelLoadError(
            f"{path.name} is a {arch!r} model; SmallThinker Desktop runs SmallThinker models only "
            "(architecture 'smallthinker')"
        )
    n_layer = _int_key(meta, "block_count", path)
    n_embd = _int_key(meta, "embedding_length", path)
    n_head = _int_key(meta, "attention.head_count", path)
    n_head_kv = _int_key(meta, "attention.head_count_kv", path)
    n_expert = _int_key(meta, "expert_count", path)
    n_expert_used = _int_key(meta, "expert_used_count", path)
    missing = [
        name
        for name in ("token_embd.weight", "output_norm.weight")
        + tuple(f"blk.{i}.{t}.weight" for i in range(n_layer) for t in LAYER_TENSORS)
        if name not in contents.tensors
    ]
    if missing:
        raise ModelLoadError(f"{path.name} lacks {len(missing)} tensors (first: {missing[0]}); the file is damaged")
    _check_shapes(path, n_embd, n_head, n_head_kv, n_expert, n_expert_used, contents.tensors)
    head_dim = _int_key(meta, "attention.key_length", path, default=max(1, n_embd // n_head))
    window = meta.get(f"{ARCH}.attention.sliding_window")
    return ModelInfo(
        path=path,
        file_size=contents.file_size,
        name=str(meta.get("general.name", path.stem)),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        n_expert=n_expert,
        n_expert_used=n_expert_used,
        n_vocab=contents.tensors["token_embd.weight"].dims[1],
        context_length=_int_key(meta, "context_length", path),
        sliding_window=SMALLTHINKER_SWA_WINDOW if isinstance(window, int) and window > 0 else None,
        chat_template=str(meta.get("tokenizer.chat_template", "")),
        tensors=contents.tensors,
    )
