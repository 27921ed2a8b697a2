"""Writes SmallThinker-architecture GGUF files with random Q4_0 weights.

No weights can be downloaded on the machines this project is built on, so tests and
benchmarks run on files of the real architecture and shapes with random weights: the
compute cost is the real model's, the text is gibberish.

Speed matters (the 4B shape is 2.4 GB): Q4_0 data is drawn from a few MB of random
blocks per scale, each tensor starting at its own random block of that pool, and is
streamed to disk tensor by tensor, never held whole in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from engine.errors import SyntheticModelError
from engine.synthetic_shapes import SyntheticShape
from engine.synthetic_vocab import CHATML_TEMPLATE, build_vocab

log = logging.getLogger(__name__)

ARCH = "smallthinker"
Q4_0_BLOCK_VALUES = 32
Q4_0_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
# Random weights -7..7 (0 twice as likely, see _zero_mean_nibbles): std about 4.3.
_NIBBLE_STD = 4.3
_POOL_BLOCKS = 1 << 18
# Random attention is nearly uniform: it adds the context's average to every token's
# hidden state, which then drowns what is particular to the token, and every token picks
# the same experts. Real attention is sharp; a smaller attention output keeps the hidden
# states (and so the routing) varied the way the real models' are.
_ATTENTION_GAIN = 0.2  # 4.7 MB of random blocks per distinct scale


@dataclass(frozen=True)
class RouterSkew:
    """Make some experts hot, as the paper measured on the real models.

    SmallThinker's router has no bias tensor, so a hot expert's router row gets a
    larger norm: its logit varies more and wins the top-k more often.
    """

    hot_fraction: float = 0.25
    scale: float = 2.0  # on the 4B shape the hot quarter then takes about half the selections


@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]  # numpy order (outermost first), as gguf writes it
    dtype: gguf.GGMLQuantizationType
    scale: float  # Q4_0: the block scale; F32: unused

    @property
    def n_values(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        if self.dtype == gguf.GGMLQuantizationType.F32:
            return self.n_values * 4
        return self.n_values // Q4_0_BLOCK_VALUES * Q4_0_BLOCK_BYTES


def _q4_scale(n_inputs: int) -> float:
    """Block scale that keeps a row's dot product with a unit-variance input near 1."""
    return 1.0 / (_NIBBLE_STD * float(np.sqrt(n_inputs)))


def plan_tensors(shape: SyntheticShape) -> list[TensorPlan]:
    """Every tensor of the file, in llama.cpp's names and the real shapes."""
    q4, f32 = gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.F32
    e, v = shape.n_embd, shape.n_vocab
    plans = [
        TensorPlan("token_embd.weight", (v, e), q4, 1.0 / _NIBBLE_STD),
        TensorPlan("output_norm.weight", (e,), f32, 0.0),
        TensorPlan("output.weight", (v, e), q4, _q4_scale(e)),
    ]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        plans += [
            TensorPlan(p + "attn_norm.weight", (e,), f32, 0.0),
            TensorPlan(p + "attn_q.weight", (shape.n_q, e), q4, _q4_scale(e)),
            TensorPlan(p + "attn_k.weight", (shape.n_kv, e), q4, _q4_scale(e)),
            TensorPlan(p + "attn_v.weight", (shape.n_kv, e), q4, _q4_scale(e)),
            TensorPlan(p + "attn_output.weight", (e, shape.n_q), q4, _ATTENTION_GAIN * _q4_scale(shape.n_q)),
            TensorPlan(p + "ffn_norm.weight", (e,), f32, 0.0),
            TensorPlan(p + "ffn_gate_inp.weight", (shape.n_expert, e), f32, 0.0),
            TensorPlan(p + "ffn_gate_exps.weight", (shape.n_expert, shape.n_ff_exp, e), q4, _q4_scale(e)),
            TensorPlan(p + "ffn_up_exps.weight", (shape.n_expert, shape.n_ff_exp, e), q4, _q4_scale(e)),
            TensorPlan(p + "ffn_down_exps.weight", (shape.n_expert, e, shape.n_ff_exp), q4, _q4_scale(shape.n_ff_exp)),
        ]
    return plans


def _add_metadata(writer: gguf.GGUFWriter, shape: SyntheticShape) -> None:
    writer.add_name(f"SmallThinker synthetic {shape.name}")
    writer.add_type("model")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff_exp)
    writer.add_expert_feed_forward_length(shape.n_ff_exp)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_expert_count(shape.n_expert)
    writer.add_expert_used_count(shape.n_expert_used)
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    writer.add_vocab_size(shape.n_vocab)
    if shape.sliding_window is not None:
        writer.add_sliding_window(shape.sliding_window)

    vocab = build_vocab(shape)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_bos_token_id(vocab.endoftext_id)
    writer.add_pad_token_id(vocab.endoftext_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)


class _Q4Pool:
    """A few MB of random Q4_0 blocks per scale, sliced into tensors of any size."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._pools: dict[float, bytes] = {}

    def _pool(self, scale: float) -> bytes:
        if scale not in self._pools:
            blocks = np.frombuffer(bytearray(self._rng.bytes(_POOL_BLOCKS * Q4_0_BLOCK_BYTES)), np.uint8)
            blocks = blocks.reshape(_POOL_BLOCKS, Q4_0_BLOCK_BYTES)
            blocks[:, 2:] = _zero_mean_nibbles(blocks[:, 2:])
            blocks[:, :2] = np.frombuffer(np.float16(scale).tobytes(), np.uint8)
            self._pools[scale] = blocks.tobytes()
        return self._pools[scale]

    def chunks(self, plan: TensorPlan) -> Iterator[memoryview]:
        pool = memoryview(self._pool(plan.scale))
        start = int(self._rng.integers(_POOL_BLOCKS)) * Q4_0_BLOCK_BYTES
        remaining = plan.nbytes
        while remaining:
            piece = pool[start : start + remaining]
            yield piece
            remaining -= len(piece)
            start = 0


def _zero_mean_nibbles(packed: np.ndarray) -> np.ndarray:
    """Map nibble 0 (weight -8) to 8 (weight 0): weights -7..7, mean 0.

    Uniform nibbles dequantise to -8..7, mean -0.5: every row then carries a bias along
    the sum of its inputs, which after ReLU grows layer by layer until the residual
    stream is dominated by one direction and every token picks the same experts.
    """
    low, high = packed & 0x0F, packed >> 4
    low[low == 0] = 8
    high[high == 0] = 8
    return low | (high << 4)


def _f32_tensor(plan: TensorPlan, rng: np.random.Generator, skew: RouterSkew | None) -> np.ndarray:
    if "ffn_gate_inp" not in plan.name:
        return np.ones(plan.shape, dtype=np.float32)  # RMS-norm weights
    n_expert, n_embd = plan.shape
    router = rng.standard_normal(plan.shape, dtype=np.float32) / np.float32(np.sqrt(n_embd))
    if skew is not None:
        n_hot = max(1, round(skew.hot_fraction * n_expert))
        hot = rng.choice(n_expert, size=n_hot, replace=False)
        router[hot] *= np.float32(skew.scale)
    return router


def write_synthetic_model(
    shape: SyntheticShape,
    out_path: str | os.PathLike[str],
    *,
    seed: int = 0,
    skew: RouterSkew | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a GGUF of `shape` to `out_path` (atomically) and return the path.

    `progress(bytes_written, total_bytes)` is called after each tensor.
    """
    shape.check()
    out_path = Path(out_path)
    if out_path.is_dir():
        raise SyntheticModelError(f"{out_path} is a folder; give a file name ending in .gguf")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(out_path.name + ".partial")
    rng = np.random.default_rng(seed)
    plans = plan_tensors(shape)
    total = sum(p.nbytes for p in plans)

    writer = gguf.GGUFWriter(tmp_path, ARCH)
    _add_metadata(writer, shape)
    for plan in plans:
        writer.add_tensor_info(plan.name, plan.shape, np.dtype(np.float32), plan.nbytes, raw_dtype=plan.dtype)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        _write_tensor_data(writer, plans, rng, skew, total, progress)
        writer.close()
        os.replace(tmp_path, out_path)
    except BaseException:
        writer.close()
        tmp_path.unlink(missing_ok=True)
        raise
    log.info("wrote synthetic %s model to %s (%d bytes)", shape.name, out_path, out_path.stat().st_size)
    return out_path


def _write_tensor_data(writer, plans, rng, skew, total, progress) -> None:
    # The tensor-info table is written; from here the data section is ours to stream.
    fout = writer.fout[0]
    pool = _Q4Pool(rng)
    done = 0
    for plan in plans:
        writer.write_padding(fout, fout.tell())
        if plan.dtype == gguf.GGMLQuantizationType.F32:
            fout.write(_f32_tensor(plan, rng, skew).tobytes())
        else:
            for chunk in pool.chunks(plan):
                fout.write(chunk)
        writer.write_padding(fout, plan.nbytes)
        done += plan.nbytes
        if progress is not None:
            progress(done, total)
