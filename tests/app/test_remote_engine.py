"""Answering through another OpenAI-compatible server: llama-cpp-python's own, and ours."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import openai
import pytest

from app.documents import read_document
from app.remote_engine import RemoteEngine, RemoteEngineError
from app.server.config import ServerSettings
from app.server.host import EngineHost
from app.server.runner import RunningServer
from app.summarizer import Summarizer
from engine.chunks import FinishReason
from engine.config import EngineConfig, SamplingParams
from engine.engine import Engine

GREEDY = SamplingParams(temperature=0, max_tokens=8)
QUESTION = [{"role": "user", "content": "Tell me about the sea."}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_cpp_server(tiny_model_path, tmp_path_factory):
    """`python -m llama_cpp.server` (llama-cpp-python's server extra) on the tiny model."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "log.txt"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(tiny_model_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "1024",
                "--n_threads",
                "2",
            ],  # fmt: skip
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=5)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            assert time.monotonic() < deadline, "llama_cpp.server did not start"
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def our_server(tiny_model_path):
    host = EngineHost()
    with Engine(tiny_model_path, EngineConfig(n_ctx=2048)) as engine:
        host.set_engine(engine, "tiny")
        with RunningServer(host, ServerSettings(port=0, api_key="secret")) as server:
            yield server


def _answer(remote: RemoteEngine, messages=QUESTION, sampling=GREEDY, cancel=None):
    chunks = list(remote.stream_chat(messages, sampling, cancel))
    return "".join(c.text for c in chunks), chunks[-1]


def test_a_chat_through_llama_cpp_python_s_server(llama_cpp_server):
    remote = RemoteEngine(llama_cpp_server, n_ctx=1024)
    text, final = _answer(remote)
    assert text and final.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    # It sends no usage figures: pieces of text and an estimate of the prompt stand in.
    assert final.stats.tokens_out > 0 and final.stats.tokens_in > 0
    assert final.stats.ttft_seconds > 0 and final.stats.decode_tokens_per_second > 0
    assert remote.memory_report() is None  # nothing of the model is in this computer's memory


def test_a_chat_through_our_own_server_with_its_key(our_server):
    remote = RemoteEngine(our_server.base_url, "secret", "tiny", n_ctx=2048)
    text, final = _answer(remote, sampling=SamplingParams(temperature=0, max_tokens=12))
    assert text and final.stats.tokens_out <= 12
    grown = [*QUESTION, {"role": "assistant", "content": text}, {"role": "user", "content": "More?"}]
    _, again = _answer(remote, grown)
    assert again.stats.reused_tokens > final.stats.tokens_in  # the server's cache, seen from here


def test_stop_ends_a_remote_answer_and_frees_the_server(our_server):
    remote = RemoteEngine(our_server.base_url, "secret", n_ctx=2048)
    cancel = threading.Event()
    received = []
    for chunk in remote.stream_chat(QUESTION, SamplingParams(temperature=0, max_tokens=400), cancel):
        received.append(chunk)
        if len(received) == 3:
            cancel.set()
    assert received[-1].finish_reason is FinishReason.CANCELLED and len(received) <= 5
    deadline = time.monotonic() + 10
    while our_server.activity.jobs[-1].ended_at is None:
        assert time.monotonic() < deadline, "the server kept generating after the client stopped"
        time.sleep(0.02)
    assert our_server.activity.jobs[-1].tokens < 400


def test_a_document_summarised_through_a_remote_server(our_server, tmp_path):
    remote = RemoteEngine(our_server.base_url, "secret", n_ctx=2048)
    text = tmp_path / "notes.txt"
    text.write_text("A short note about the harbour and its boats.\n\n" * 40, encoding="utf-8")
    result = Summarizer(remote, sampling=SamplingParams(temperature=0, max_tokens=32)).summarize(read_document(text))
    assert result.final and not result.cancelled


@pytest.mark.parametrize(
    ("url", "key", "model", "message"),
    [
        ("http://127.0.0.1:1/v1", "", "", "cannot reach the server at http://127.0.0.1:1/v1"),
        ("localhost:8000", "", "", "is not a server address"),
        (None, "wrong", "", "refused the API key"),
        (None, "secret", "gpt-4o", "has no model “gpt-4o”; it has tiny"),
    ],
)
def test_what_goes_wrong_is_said(our_server, url, key, model, message):
    with pytest.raises(RemoteEngineError, match=message):
        RemoteEngine(url or our_server.base_url, key, model)
