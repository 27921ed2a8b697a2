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


def test_models_lists_the_catalog_and_a_recommendation(tmp_path, capsys):
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SmallThinker 4B" in out and "SmallThinker 21B" in out
    assert out.count("not downloaded") == 2
    assert "Recommended: SmallThinker" in out


def test_download_fetches_from_the_hub_and_lists_it(tmp_path, capsys, monkeypatch):
    from app.catalog import ModelCatalog
    from tests.app.fake_hub import FakeHub

    entry = ModelCatalog.load().get("4b")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        hub.add_file(entry.repo_id, entry.filename, b"GGUF" + bytes(5000))
        assert main(["download", "4b", "--models-dir", str(tmp_path)]) == 0
    assert (tmp_path / entry.filename).read_bytes() == b"GGUF" + bytes(5000)
    assert "is ready" in capsys.readouterr().out
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    assert f"downloaded: {tmp_path / entry.filename}" in capsys.readouterr().out


def test_download_offline_without_the_model_fails_with_a_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "21b", "--models-dir", str(tmp_path)]) == 1
    assert "offline" in capsys.readouterr().err


def test_models_uses_the_folder_chosen_in_settings(tmp_path, capsys):
    import dataclasses

    from app.settings import Settings, save_settings

    chosen = tmp_path / "my-models"
    chosen.mkdir()
    (chosen / "SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf").write_bytes(b"GGUF")
    # as a finished download leaves it: its size recorded when its SHA-256 was checked
    (chosen / ".verified.json").write_text('{"SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf": {"size": 4, "sha256": "0"}}')
    save_settings(dataclasses.replace(Settings(), models_dir=str(chosen)))
    assert main(["models"]) == 0
    assert f"downloaded: {chosen / 'SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf'}" in capsys.readouterr().out


def test_serve_answers_openai_clients_until_stopped(tiny_model_path, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "ui", "serve", "--model", str(tiny_model_path), "--port", str(port)]
    env = {**os.environ, "SMALLTHINKER_API_KEY": "from-env"}
    server = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith(f"serving tiny at http://127.0.0.1:{port}/v1")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="from-env", max_retries=0)
        answer = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
        )
        assert answer.choices[0].message.content
    finally:
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 130 and "interrupted" in errors  # Ctrl+C: a clean stop


def test_serve_refuses_the_network_without_a_key_before_loading(tiny_model_path, capsys):
    args = build_parser().parse_args(["serve", "--model", str(tiny_model_path), "--host", "0.0.0.0"])
    assert run_command(args) == 1
    assert "set an API key first" in capsys.readouterr().err
