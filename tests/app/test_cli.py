from __future__ import annotations

import pytest

from app.cli import build_parser, run_command


def main(argv: list[str]) -> int:
    return run_command(build_parser().parse_args(argv))


def test_synth_writes_a_file_that_llama_cpp_decodes(tmp_path, capsys):
    out = tmp_path / "m.gguf"
    assert main(["synth", "--shape", "tiny", str(out), "--verify"]) == 0
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "decoded 8" in printed and str(out) in printed
    assert not list(tmp_path.glob("*.partial"))


def test_synth_into_a_folder_fails_with_a_message(tmp_path, capsys):
    assert main(["synth", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_unknown_shape_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--shape", "7b", str(tmp_path / "x.gguf")])
    assert exc.value.code == 2
