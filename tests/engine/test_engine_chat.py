"""Streaming chat on the tiny synthetic model: text, stats, cancel, KV reuse, overflow."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.chunks import FinishReason
from engine.config import EngineConfig, KvType, SamplingParams
from engine.conversation_cache import common_prefix_length
from engine.engine import Engine, EngineBusyError
from engine.prompt_builder import ContextOverflowError

GREEDY = SamplingParams(temperature=0.0, max_tokens=24)
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_stream_yields_text_then_one_final_chunk_with_stats(tiny_engine):
    chunks = list(tiny_engine.stream_chat([SYSTEM, user("Hello, who are you?")], GREEDY))
    assert [c.is_final for c in chunks].count(True) == 1 and chunks[-1].is_final
    text = "".join(c.text for c in chunks)
    assert text.strip()
    stats = chunks[-1].stats
    assert chunks[-1].finish_reason is FinishReason.LENGTH
    assert stats.tokens_out == 24
    assert stats.tokens_in == len(
        tiny_engine.tokenize(tiny_engine.render_prompt([SYSTEM, user("Hello, who are you?")]))
    )
    assert stats.prefill_tokens == stats.tokens_in and stats.reused_tokens == 0
    assert stats.ttft_seconds > 0 and stats.prefill_tokens_per_second > 0 and stats.decode_tokens_per_second > 0
    assert stats.context_used == stats.tokens_in + stats.tokens_out - 1  # the last token is sampled, not evaluated
    assert stats.context_length == 2048


def test_default_sampling_is_seeded_and_reproducible(tiny_engine):
    sampling = SamplingParams(max_tokens=16, seed=7)
    first = tiny_engine.chat([user("Tell me a story")], sampling).text
    tiny_engine.forget_conversations()
    assert tiny_engine.chat([user("Tell me a story")], sampling).text == first


def test_cancel_mid_answer_stops_within_one_token_and_engine_stays_usable(tiny_engine):
    # Greedy on the tiny model: every token is one whole word, so one chunk per token.
    cancel = threading.Event()
    sampling = SamplingParams(temperature=0.0, max_tokens=500)
    received = []
    for chunk in tiny_engine.stream_chat([user("Write a long essay")], sampling, cancel):
        received.append(chunk)
        if len(received) == 3:
            cancel.set()
    final = received[-1]
    assert final.finish_reason is FinishReason.CANCELLED
    assert final.stats.tokens_out == 3  # the cancel was seen before the next token was sampled
    assert len(received) == 4  # three tokens, then the final chunk
    again = tiny_engine.chat([user("Write a long essay")], GREEDY)
    assert again.finish_reason is FinishReason.LENGTH and again.stats.tokens_out == 24


def test_cancel_before_the_prompt_is_evaluated(tiny_engine):
    cancel = threading.Event()
    cancel.set()
    result = tiny_engine.chat([user("Hi")], GREEDY, cancel)
    assert result.finish_reason is FinishReason.CANCELLED and result.stats.tokens_out == 0
    assert tiny_engine.chat([user("Hi")], GREEDY).stats.tokens_out == 24


def test_second_turn_prefills_only_its_new_tokens(tiny_engine):
    first_turn = [SYSTEM, user("What is the capital of France?")]
    first = tiny_engine.chat(first_turn, GREEDY)
    second_turn = [*first_turn, assistant("Paris is the capital."), user("And of Italy?")]
    second = tiny_engine.chat(second_turn, GREEDY)
    # Everything up to the previous prompt's end is reused; only the rest is computed.
    new_tokens = len(tiny_engine.tokenize(tiny_engine.render_prompt(second_turn))) - first.stats.tokens_in
    assert second.stats.reused_tokens == first.stats.tokens_in
    assert second.stats.prefill_tokens == new_tokens


def test_the_models_own_answer_is_reused_on_the_next_turn(tiny_engine):
    turn = [SYSTEM, user("Describe the sea.")]
    answer = tiny_engine.chat(turn, GREEDY)
    following = tiny_engine.chat([*turn, assistant(answer.text), user("Shorter, please.")], GREEDY)
    # The answer's sampled tokens are reused as they are, so only the new message is computed.
    assert following.stats.reused_tokens == answer.stats.tokens_in + answer.stats.tokens_out - 1
    new_message = tiny_engine.tokenize(
        "<|im_end|>\n<|im_start|>user\nShorter, please.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert following.stats.prefill_tokens == len(new_message) + 1


def test_switching_conversations_and_back_does_not_prefill_again(tiny_engine):
    conv_a = [SYSTEM, user("Conversation A is about gardening and the soil in spring.")]
    conv_b = [{"role": "system", "content": "Answer in verse."}, user("Conversation B is about ships.")]
    a1 = tiny_engine.chat(conv_a, GREEDY)
    b1 = tiny_engine.chat(conv_b, GREEDY)
    common = common_prefix_length(
        np.array(tiny_engine.encode_conversation(conv_a)), np.array(tiny_engine.encode_conversation(conv_b))
    )
    assert b1.stats.reused_tokens == common  # only the "<|im_start|>system\n" header
    a2_messages = [*conv_a, assistant("Dig deep."), user("What about roses?")]
    a2 = tiny_engine.chat(a2_messages, GREEDY)
    assert a2.stats.reused_tokens == a1.stats.tokens_in
    b2 = tiny_engine.chat([*conv_b, assistant("A ship sails."), user("Which one?")], GREEDY)
    assert b2.stats.reused_tokens == b1.stats.tokens_in


def test_only_caches_with_something_to_lose_are_saved(tiny_engine):
    conv_a = [SYSTEM, user("Conversation A is about gardening and the soil in spring.")]
    conv_b = [{"role": "system", "content": "Answer in verse."}, user("Conversation B is about ships.")]
    tiny_engine.chat(conv_a, GREEDY)
    tiny_engine.chat(conv_b, GREEDY)
    assert tiny_engine.saved_conversations == 1  # A, set aside for B
    tiny_engine.forget_conversations()
    tiny_engine.chat([*conv_a, assistant("Dig deep."), user("Roses?")], GREEDY)
    assert tiny_engine.saved_conversations == 0  # A came back; the empty live cache was not saved
    tiny_engine.chat([*conv_a, assistant("Dig deep."), user("Roses?"), assistant("Yes."), user("More")], GREEDY)
    assert tiny_engine.saved_conversations == 0  # the same conversation growing: nothing set aside


def test_conversation_caches_survive_a_restart_when_kept_on_disk(tiny_model_path, tmp_path):
    config = EngineConfig(n_ctx=1024, conversation_cache_dir=tmp_path / "kv")
    conversation = [SYSTEM, user("Remember this conversation across restarts, please.")]
    with Engine(tiny_model_path, config) as engine:
        first = engine.chat(conversation, GREEDY)
    assert list((tmp_path / "kv").rglob("*.state"))
    with Engine(tiny_model_path, config) as engine:
        second = engine.chat([*conversation, assistant("I will."), user("Good.")], GREEDY)
    assert second.stats.reused_tokens == first.stats.tokens_in


def test_overflow_drops_the_oldest_turns_keeps_the_system_prompt_and_says_so(tiny_model_path):
    with Engine(tiny_model_path, EngineConfig(n_ctx=256)) as engine:
        history = [SYSTEM]
        for i in range(12):
            history += [user(f"Question number {i} about the weather in the mountains"), assistant("It is cold " * 8)]
        history.append(user("And now?"))
        result = engine.chat(history, SamplingParams(temperature=0.0, max_tokens=32))
    stats = result.stats
    assert stats.trimmed_messages > 0 and stats.trimmed_messages % 2 == 0  # whole turns
    assert "oldest" in result.notice
    assert stats.tokens_in + 32 <= 256
    assert result.finish_reason is FinishReason.LENGTH


def test_a_single_message_larger_than_the_context_is_refused_clearly(tiny_model_path):
    with Engine(tiny_model_path, EngineConfig(n_ctx=256)) as engine:
        with pytest.raises(ContextOverflowError, match="context holds 256"):
            engine.chat([user("word " * 400)], GREEDY)
        assert engine.chat([user("short")], GREEDY).stats.tokens_out == 24  # still usable


def test_generation_that_fills_the_context_ends_with_context_full(tiny_model_path):
    with Engine(tiny_model_path, EngineConfig(n_ctx=256)) as engine:
        result = engine.chat([user("Go on forever")], SamplingParams(temperature=0.0, max_tokens=1000))
    assert result.finish_reason is FinishReason.CONTEXT_FULL
    assert result.stats.context_used == 256


def test_q8_0_kv_cache_runs_and_halves_the_kv_bytes(tiny_model_path):
    with Engine(tiny_model_path, EngineConfig(n_ctx=1024, kv_type=KvType.Q8_0)) as q8:
        assert q8.chat([user("Hi")], GREEDY).stats.tokens_out == 24
        q8_bytes = q8.memory_report().kv_bytes
    with Engine(tiny_model_path, EngineConfig(n_ctx=1024)) as f16:
        f16_bytes = f16.memory_report().kv_bytes
    assert q8_bytes == f16_bytes * 34 // 64


def test_a_second_concurrent_stream_is_refused(tiny_engine):
    stream = tiny_engine.stream_chat([user("One")], GREEDY)
    next(stream)
    with pytest.raises(EngineBusyError):
        next(tiny_engine.stream_chat([user("Two")], GREEDY))
    stream.close()
    assert tiny_engine.chat([user("Two")], GREEDY).stats.tokens_out == 24
