from __future__ import annotations

import gguf
import pytest

from engine.chat_template import ChatTemplate, ChatTemplateError


def _template_from_file(path) -> str:
    field = gguf.GGUFReader(path).get_field("tokenizer.chat_template")
    return field.contents()


def test_template_from_the_file_formats_a_conversation_as_chatml(tiny_model_path):
    template = ChatTemplate(_template_from_file(tiny_model_path))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    assert template.render(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nHow are you?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert not template.render(messages, add_generation_prompt=False).endswith("assistant\n")


def test_missing_or_broken_templates_raise_a_clear_error():
    with pytest.raises(ChatTemplateError, match="no chat template"):
        ChatTemplate("  ")
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for m in messages %}")
    refusing = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        refusing.render([{"role": "user", "content": "x"}])
