"""A model file's first load is tried in a child process: a crash there is a message here."""

from __future__ import annotations

import shutil
import sys

import pytest

from engine import model_trial
from engine.errors import ModelLoadError
from engine.model_trial import VERDICT_FILE, check_model_loads
from tests.engine.gguf_edits import edited_copy

ABORT = [sys.executable, "-c", "import os; os.abort()"]


@pytest.fixture
def fresh_copy(tiny_model_path, tmp_path):
    """A file this process has not tried yet."""
    return shutil.copy(tiny_model_path, tmp_path / "copy.gguf")


def test_a_good_file_passes_once_and_is_remembered(fresh_copy, tmp_path):
    check_model_loads(fresh_copy, tmp_path)  # a real child: llama.cpp reads it with no_alloc
    assert str(fresh_copy.resolve()) in (tmp_path / VERDICT_FILE).read_text()
    model_trial._passed.clear()  # another session: the record in the folder answers
    check_model_loads(fresh_copy, tmp_path, command=lambda _path: ABORT)


def test_a_crash_in_the_trial_is_a_message_and_is_not_remembered(fresh_copy, tmp_path):
    with pytest.raises(ModelLoadError, match=r"llama.cpp crashed reading copy.gguf .*SIGABRT.*app is unaffected"):
        check_model_loads(fresh_copy, tmp_path, command=lambda _path: ABORT)
    assert not (tmp_path / VERDICT_FILE).exists()


def test_what_llama_cpp_refuses_in_the_trial_is_said_in_its_words(tiny_model_path, tmp_path):
    # A tensor of the wrong shape, which our own checks would refuse first (engine/model_info.py);
    # here the trial alone meets it.
    bad = edited_copy(tiny_model_path, tmp_path / "flat.gguf", flatten=("blk.0.attn_q.weight",))
    with pytest.raises(ModelLoadError, match=r"llama.cpp cannot load flat.gguf; in a trial load .*blk.0.attn_q"):
        check_model_loads(bad, tmp_path)


def test_a_changed_file_is_tried_again(fresh_copy, tmp_path):
    check_model_loads(fresh_copy, tmp_path)
    with open(fresh_copy, "ab") as f:
        f.write(b"\0" * 32)  # another size: another file as far as the record goes
    with pytest.raises(ModelLoadError, match="crashed"):
        check_model_loads(fresh_copy, tmp_path, command=lambda _path: ABORT)
