"""The OpenAI-compatible server, driven by the official `openai` client over real HTTP."""

from __future__ import annotations

import threading
import time

import openai
import pytest

from app.server.config import ServerConfigError, ServerSettings
from app.server.host import EngineHost
from app.server.runner import RunningServer
from engine.config import EngineConfig
from engine.engine import Engine

KEY = "test-key"
MODEL = "tiny"


@pytest.fixture(scope="module")
def served(tiny_model_path):
    """The tiny model behind a server on a free port; no saved conversations, so that the
    live cache alone decides what is reused (and forgetting it makes answers repeatable)."""
    host = EngineHost()
    with Engine(tiny_model_path, EngineConfig(n_ctx=1024, saved_conversations=0)) as engine:
        host.set_engine(engine, MODEL)
        settings = ServerSettings(port=0, api_key=KEY, max_request_bytes=64 << 10, max_tokens=256)
        with RunningServer(host, settings) as server:
            yield server, host, engine


@pytest.fixture
def client(served):
    server, _, _ = served
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


def _chat(client, content="Tell me about the sea.", **kwargs):
    kwargs.setdefault("temperature", 0)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **kwargs)


def _wait_idle(host: EngineHost, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while host.state().busy_with is not None:
        assert time.monotonic() < deadline, "the engine stayed busy"
        time.sleep(0.01)


def test_the_loaded_model_is_listed(client):
    assert [m.id for m in client.models.list()] == [MODEL]


def test_a_whole_answer_has_text_a_finish_reason_and_usage(client):
    answer = _chat(client, max_tokens=12)
    assert answer.model == MODEL and answer.object == "chat.completion"
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 12
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_a_streamed_answer_arrives_in_pieces_and_ends_with_usage(client, served):
    _, _, engine = served
    engine.forget_conversations()
    whole = _chat(client, max_tokens=16).choices[0].message.content
    engine.forget_conversations()
    stream = _chat(client, max_tokens=16, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == whole
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_sequence_ends_the_answer_before_it(client, served, stream):
    _, _, engine = served
    engine.forget_conversations()
    full = _chat(client, max_tokens=40).choices[0].message.content
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    expected = full[: full.find(stop)]
    engine.forget_conversations()
    if stream:
        chunks = list(_chat(client, max_tokens=40, stop=[stop], stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert reason == ["stop"]
    else:
        answer = _chat(client, max_tokens=40, stop=stop)
        text, reason = answer.choices[0].message.content, answer.choices[0].finish_reason
        assert reason == "stop"
    assert text == expected


def test_a_raw_completion(client):
    answer = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0)
    assert answer.object == "text_completion" and answer.choices[0].text
    assert answer.usage.completion_tokens <= 8


def test_bad_requests_get_openai_errors_with_a_reason(client, served):
    server, _, _ = served
    with pytest.raises(openai.BadRequestError, match="temperature"):
        _chat(client, temperature=-1)
    with pytest.raises(openai.BadRequestError, match="max_tokens is limited to 256"):
        _chat(client, max_tokens=100_000)
    with pytest.raises(openai.NotFoundError, match="this server has `tiny`"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIStatusError, match="larger than this server accepts") as too_big:
        _chat(client, content="word " * 20_000)
    assert too_big.value.status_code == 413
    stranger = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        stranger.models.list()


def test_without_a_model_the_server_says_so(tiny_model_path):
    with RunningServer(EngineHost(), ServerSettings(port=0)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        assert list(client.models.list()) == []
        with pytest.raises(openai.InternalServerError, match="No model is loaded") as error:
            _chat(client)
        assert error.value.status_code == 503


def test_two_concurrent_streams_take_turns_and_both_complete(client, served):
    server, host, _ = served
    results: dict[int, list] = {}

    def ask(i):
        results[i] = list(_chat(client, content=f"Question {i}", max_tokens=24, stream=True))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for chunks in results.values():
        assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] in (["stop"], ["length"])
    first, second = sorted(list(server.activity.jobs)[-2:], key=lambda job: job.started_at)
    assert second.started_at >= first.ended_at  # one at a time: the second waited its turn


def test_a_client_that_goes_away_frees_the_engine_within_a_token(client, served):
    server, host, _ = served
    stream = _chat(client, max_tokens=256, stream=True)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 3:
            break
    stream.close()
    _wait_idle(host)
    job = server.activity.jobs[-1]
    assert job.cancelled_at_token is not None and job.tokens < 256
    assert job.tokens_after_cancel <= 1


def test_a_growing_conversation_prefills_only_its_new_messages(client):
    question = [{"role": "user", "content": "Name a colour of the sea."}]
    first = client.chat.completions.create(model=MODEL, messages=question, max_tokens=16, temperature=0)
    answer = first.choices[0].message.content
    grown = [*question, {"role": "assistant", "content": answer}, {"role": "user", "content": "And of the sky?"}]
    second = client.chat.completions.create(model=MODEL, messages=grown, max_tokens=8, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    # The first prompt and the answer the engine generated are already in the cache: only
    # the new question (and the template's tokens around it) is read.
    assert cached >= first.usage.prompt_tokens + first.usage.completion_tokens - 1
    other = [{"role": "user", "content": "Something else entirely, about mountains."}]
    unrelated = client.chat.completions.create(model=MODEL, messages=other, max_tokens=4, temperature=0)
    assert unrelated.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens // 2


def test_listening_beyond_this_computer_needs_a_key():
    with pytest.raises(ServerConfigError, match="set an API key"):
        ServerSettings(host="0.0.0.0").check()
    ServerSettings(host="0.0.0.0", api_key="k").check()
    ServerSettings(host="::1").check()


def test_a_port_in_use_is_refused_with_a_message(served):
    server, host, _ = served
    with pytest.raises(ServerConfigError, match="in use"):
        RunningServer(host, ServerSettings(port=server.port)).start()


def test_stopping_the_server_ends_its_answers_before_the_engine_can_be_closed(served):
    _, host, _ = served
    server = RunningServer(host, ServerSettings(port=0)).start()
    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=30)
    errors = []

    def ask():
        try:
            _chat(client, max_tokens=64)
        except openai.APIError as exc:
            errors.append(exc)

    with host.turn("test"):  # the engine is busy: the request waits its turn
        asker = threading.Thread(target=ask)
        asker.start()
        deadline = time.monotonic() + 10
        while not server.activity.jobs:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        stopper.join(20)
        assert not stopper.is_alive()  # stop() returned: no answer of this server is left running
        job = server.activity.jobs[-1]
        assert job.ended_at is not None and job.tokens == 0
    asker.join(20)
