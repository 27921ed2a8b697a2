"""Writes SmallThinker-architecture GGUF files with random quantised weights.

No weights can be downloaded on the machines this project is built on, so tests and
benchmarks run on files of the real architecture and shapes with random weights: the
compute cost is the real model's, the text is gibberish.

The tensor types follow llama-quantize's Q4_0 recipe, as the official files do (see
shared/MODEL_FACTS.md): every matrix Q4_0 but `output.weight`, which is Q6_K (Q8_0 where its
rows are not a multiple of 256 values, as llama-quantize falls back for the tiny shapes);
routers and norms F32. `Recipe.PURE` (llama-quantize --pure, like the QAT file) makes the
output Q4_0 too. Data is streamed to disk tensor by tensor, never held whole in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import gguf
import numpy as np

from engine.errors import SyntheticModelError
from engine.synthetic.blocks import BlockPool, block_bytes, block_values
from engine.synthetic.shapes import SyntheticShape
from engine.synthetic.vocab import CHATML_TEMPLATE, build_vocab

log = logging.getLogger(__name__)

ARCH = "smallthinker"
Q = gguf.GGMLQuantizationType
# Random attention is nearly uniform: it adds the context's average to every token's
# hidden state, which then drowns what is particular to the token, and every token picks
# the same experts. Real attention is sharp; a smaller attention output keeps the hidden
# states (and so the routing) varied the way the real models' are.
_ATTENTION_GAIN = 0.2


class Recipe(StrEnum):
    DEFAULT = "default"  # llama-quantize's Q4_0 mix: output.weight Q6_K
    PURE = "pure"  # every matrix Q4_0 (llama-quantize --pure)


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
    dtype: Q
    std: float  # quantised: root mean square of the weights; F32: unused

    @property
    def n_values(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.n_values // block_values(self.dtype) * block_bytes(self.dtype)


def _std(n_inputs: int) -> float:
    """Weight spread that keeps a row's dot product with a unit-variance input near 1."""
    return 1.0 / float(np.sqrt(n_inputs))


def output_type(shape: SyntheticShape, recipe: Recipe) -> Q:
    """llama-quantize's choice for `output.weight` (and its fallback for short rows)."""
    if recipe is Recipe.PURE:
        return Q.Q4_0
    return Q.Q6_K if shape.n_embd % block_values(Q.Q6_K) == 0 else Q.Q8_0


def plan_tensors(shape: SyntheticShape, recipe: Recipe = Recipe.DEFAULT) -> list[TensorPlan]:
    """Every tensor of the file, in llama.cpp's names, order and the real shapes."""
    q4, f32 = Q.Q4_0, Q.F32
    e, v = shape.n_embd, shape.n_vocab
    plans = [
        TensorPlan("token_embd.weight", (v, e), q4, 1.0),
        TensorPlan("output_norm.weight", (e,), f32, 0.0),
        TensorPlan("output.weight", (v, e), output_type(shape, recipe), _std(e)),
    ]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        plans += [
            TensorPlan(p + "attn_norm.weight", (e,), f32, 0.0),
            TensorPlan(p + "attn_q.weight", (shape.n_q, e), q4, _std(e)),
            TensorPlan(p + "attn_k.weight", (shape.n_kv, e), q4, _std(e)),
            TensorPlan(p + "attn_v.weight", (shape.n_kv, e), q4, _std(e)),
            TensorPlan(p + "attn_output.weight", (e, shape.n_q), q4, _ATTENTION_GAIN * _std(shape.n_q)),
            TensorPlan(p + "ffn_norm.weight", (e,), f32, 0.0),
            TensorPlan(p + "ffn_gate_inp.weight", (shape.n_expert, e), f32, 0.0),
            TensorPlan(p + "ffn_gate_exps.weight", (shape.n_expert, shape.n_ff_exp, e), q4, _std(e)),
            TensorPlan(p + "ffn_up_exps.weight", (shape.n_expert, shape.n_ff_exp, e), q4, _std(e)),
            TensorPlan(p + "ffn_down_exps.weight", (shape.n_expert, e, shape.n_ff_exp), q4, _std(shape.n_ff_exp)),
        ]
    return plans


def _add_metadata(writer: gguf.GGUFWriter, shape: SyntheticShape) -> None:
    writer.add_name(shape.general_name or f"SmallThinker synthetic {shape.name}")
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
    writer.add_rope_freq_base(shape.rope_freq_base)
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
    recipe: Recipe = Recipe.DEFAULT,
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
    plans = plan_tensors(shape, recipe)
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
    pool = BlockPool(rng)
    done = 0
    for plan in plans:
        writer.write_padding(fout, fout.tell())
        if plan.dtype == Q.F32:
            fout.write(_f32_tensor(plan, rng, skew).tobytes())
        else:
            for chunk in pool.chunks(plan.dtype, plan.std, plan.nbytes):
                fout.write(chunk)
        writer.write_padding(fout, plan.nbytes)
        done += plan.nbytes
        if progress is not None:
            progress(done, total)
