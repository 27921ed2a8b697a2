from __future__ import annotations

from collections import Counter
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.config import EngineConfig, SamplingParams
from engine.engine import Engine
from engine.errors import SyntheticModelError
from engine.synthetic import Recipe, RouterSkew, get_shape, plan_tensors, write_synthetic_model
from engine.synthetic.vocab import IM_END, IM_START, build_vocab, bytes_to_unicode

GREETING = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say something about the weather."},
]


def _reader_summary(path: Path) -> dict[str, tuple[tuple[int, ...], int]]:
    reader = gguf.GGUFReader(path)
    # GGUF stores dimensions innermost first; the plan uses numpy order.
    return {t.name: (tuple(int(d) for d in reversed(t.shape)), int(t.tensor_type)) for t in reader.tensors}


@pytest.mark.parametrize("shape_name", ["tiny", "tiny-swa"])
def test_tiny_models_load_in_llama_cpp_and_generate(shape_name, tmp_path):
    path = write_synthetic_model(get_shape(shape_name), tmp_path / f"{shape_name}.gguf")
    with Engine(path, EngineConfig(n_ctx=512)) as engine:
        result = engine.chat(GREETING, SamplingParams(temperature=0.0, max_tokens=12))
        assert engine.load_seconds < 5  # generous: "well under a second" on a quiet machine
    assert result.stats.tokens_out == 12
    assert result.text.strip()


def test_tiny_model_tensors_match_the_plan(tiny_model_path):
    shape = get_shape("tiny")
    expected = {p.name: (p.shape, int(p.dtype)) for p in plan_tensors(shape)}
    assert _reader_summary(tiny_model_path) == expected


def test_chat_special_tokens_are_single_tokens_in_llama_cpp(tiny_model_path):
    vocab = build_vocab(get_shape("tiny"))
    with Engine(tiny_model_path, EngineConfig(n_ctx=512)) as engine:
        prompt = engine.render_prompt(GREETING)
        tokens = engine.tokenize(prompt)
    assert prompt.startswith(IM_START + "system\n")
    assert tokens[0] == vocab.im_start_id
    assert tokens.count(vocab.eos_id) == 2  # after the system and the user turn


def test_vocab_has_the_qwen2_layout_at_the_real_size():
    vocab = build_vocab(get_shape("4b"))
    assert len(vocab.tokens) == 151_936
    assert vocab.tokens[151_643:151_646] == ["<|endoftext|>", IM_START, IM_END]
    assert (vocab.endoftext_id, vocab.im_start_id, vocab.eos_id) == (151_643, 151_644, 151_645)
    assert len(set(vocab.tokens)) == len(vocab.tokens)
    assert vocab.tokens[:256] == list(bytes_to_unicode().values())
    token_set = set(vocab.tokens)
    for merge in vocab.merges:
        left, right = merge.split(" ")
        assert left in token_set and right in token_set and left + right in token_set


REAL_4B_FILE_BYTES = 2_472_877_152  # SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf
REAL_4B_TENSOR_BYTES = 2_466_925_056  # derived in shared/MODEL_FACTS.md


def test_the_4b_plan_has_the_official_files_type_mix_and_tensor_bytes():
    plans = plan_tensors(get_shape("4b"))
    types = Counter(p.dtype.name for p in plans)
    assert types == {"F32": 97, "Q4_0": 225, "Q6_K": 1}
    by_name = {p.name: p for p in plans}
    assert by_name["output.weight"].dtype.name == "Q6_K"
    assert by_name["blk.7.ffn_gate_inp.weight"].dtype.name == "F32"
    assert sum(p.nbytes for p in plans) == REAL_4B_TENSOR_BYTES
    assert {p.dtype.name for p in plan_tensors(get_shape("4b"), Recipe.PURE)} == {"F32", "Q4_0"}


def test_tiny_output_falls_back_to_q8_0_as_llama_quantize_does(tmp_path):
    # 128 values per row cannot hold Q6_K's 256-value blocks; the file still loads and answers.
    assert {p.name: p.dtype.name for p in plan_tensors(get_shape("tiny"))}["output.weight"] == "Q8_0"


def test_router_skew_makes_hot_rows_larger(tmp_path):
    shape = get_shape("tiny")
    path = write_synthetic_model(shape, tmp_path / "skewed.gguf", skew=RouterSkew(hot_fraction=0.25, scale=4.0))
    reader = gguf.GGUFReader(path)
    router = next(t for t in reader.tensors if t.name == "blk.0.ffn_gate_inp.weight")
    norms = np.linalg.norm(np.asarray(router.data).reshape(shape.n_expert, shape.n_embd), axis=1)
    ordered = np.sort(norms)
    n_hot = round(0.25 * shape.n_expert)
    assert ordered[-n_hot:].min() > 2.5 * ordered[:-n_hot].max()


def test_bad_shape_is_refused_with_reason(tmp_path):
    with pytest.raises(SyntheticModelError, match="unknown shape"):
        get_shape("7b")
    with pytest.raises(SyntheticModelError, match="folder"):
        write_synthetic_model(get_shape("tiny"), tmp_path)


@pytest.mark.slow
def test_4b_shape_has_the_real_size_types_and_shapes_and_decodes(tmp_path):
    shape = get_shape("4b")
    path = write_synthetic_model(shape, tmp_path / "4b.gguf")
    try:
        plans = plan_tensors(shape)
        summary = _reader_summary(path)
        assert summary == {p.name: (p.shape, int(p.dtype)) for p in plans}
        assert summary["blk.31.ffn_gate_exps.weight"][0] == (32, 768, 1536)
        data_bytes = sum(p.nbytes for p in plans)
        size = path.stat().st_size
        # data plus a header of a few MB (the 151,936-token vocabulary)
        assert data_bytes < size < data_bytes + 8_000_000
        assert abs(size - REAL_4B_FILE_BYTES) < 0.01 * REAL_4B_FILE_BYTES
        assert summary["output.weight"][1] == int(gguf.GGMLQuantizationType.Q6_K)
        metadata = gguf.GGUFReader(path).fields
        assert bytes(metadata["general.name"].parts[-1]).decode() == "4b_v7"
        with Engine(path, EngineConfig(n_ctx=256)) as engine:
            result = engine.chat(GREETING, SamplingParams(temperature=0.0, max_tokens=2))
        assert result.stats.tokens_out == 2
    finally:
        path.unlink(missing_ok=True)
