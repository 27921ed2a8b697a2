"""Bad model files are refused with a reason before llama.cpp sees them."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from engine.engine import Engine
from engine.errors import ModelLoadError
from engine.model_info import inspect_model
from tests.engine.gguf_edits import deeply_nested_array, edited_copy

U32, STR = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.STRING


def _truncated(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


def _zero_bytes(src, dst):
    dst.write_bytes(b"")


def _random_bytes(src, dst):
    dst.write_bytes(np.random.default_rng(1).bytes(1 << 20))


def _text_renamed(src, dst):
    dst.write_text("# My notes\n\nThis is a Markdown file, not a model.\n" * 100, encoding="utf-8")


def _wrong_architecture(src, dst):
    writer = gguf.GGUFWriter(dst, "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _header_only(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[:4096])


def _more_experts_used_than_exist(src, dst):
    edited_copy(src, dst, {"smallthinker.expert_used_count": (U32, 9)})  # the tiny model has 8


def _two_billion_layers(src, dst):
    edited_copy(src, dst, {"smallthinker.block_count": (U32, 2_000_000_000)})


def _key_length_as_text(src, dst):
    edited_copy(src, dst, {"smallthinker.attention.key_length": (STR, "32")})


def _one_dimensional_token_embedding(src, dst):
    edited_copy(src, dst, flatten=("token_embd.weight",))


def _arrays_nested_50000_deep(src, dst):
    deeply_nested_array(dst, 50_000)


def _symlink_loop(src, dst):
    dst.symlink_to(dst)


CORPUS = {
    "truncated": (_truncated, "incomplete"),
    "zero bytes": (_zero_bytes, "empty"),
    "random bytes": (_random_bytes, "not a valid GGUF"),
    "text renamed .gguf": (_text_renamed, "not a valid GGUF"),
    "wrong architecture": (_wrong_architecture, "'llama' model"),
    "header only": (_header_only, "incomplete"),
    # These reached llama.cpp (which aborted the process) or gave a traceback (issue 17, items 9-10).
    "more experts used than exist": (_more_experts_used_than_exist, "routes each token to 9 experts but has only 8"),
    "two billion layers": (_two_billion_layers, "'smallthinker.block_count' is 2,000,000,000"),
    "key length as text": (_key_length_as_text, "lacks a valid 'smallthinker.attention.key_length'"),
    "one-dimensional token embedding": (_one_dimensional_token_embedding, "the token embedding has shape"),
    "arrays nested 50,000 deep": (_arrays_nested_50000_deep, "nested more than 4 deep"),
    "symlink loop": (_symlink_loop, "cannot be"),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_files_raise_model_load_error_with_a_reason(case, tiny_model_path, tmp_path):
    make, expected = CORPUS[case]
    bad = tmp_path / "model.gguf"
    make(tiny_model_path, bad)
    with pytest.raises(ModelLoadError, match=expected):
        Engine(bad)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        inspect_model(tmp_path / "nothing.gguf")
    with pytest.raises(ModelLoadError, match="folder"):
        inspect_model(tmp_path)


def test_a_valid_file_is_described(tiny_model_path):
    info = inspect_model(tiny_model_path)
    assert (info.n_layer, info.n_embd, info.n_expert, info.n_expert_used) == (4, 128, 8, 2)
    assert info.sliding_window is None and info.n_global_layers == 4
    assert "<|im_start|>" in info.chat_template
    down = info.tensors["blk.0.ffn_down_exps.weight"]
    assert down.dims == (64, 128, 8) and down.offset + down.nbytes <= info.file_size
