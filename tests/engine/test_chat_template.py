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


HOSTILE_TEMPLATES = {
    # issue 17, item 11: each of these took the app down (OverflowError, MemoryError) or froze it
    "a range of 10**9": ("{% for i in range(10**9) %}x{% endfor %}", "calls a function with 1,000,000,000"),
    "four billion characters": ("{{ 'x' * 4000000000 }}", "value too large"),
    "padding to 10**9": ("{{ 'x'.center(10**9) }}", "calls a function with"),
    "loops that never finish": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "took more than 2 s",
    ),
    "output without end": (
        "{% for a in range(100000) %}{% for b in range(1000) %}{{ 'y' * 1000 }}{% endfor %}{% endfor %}",
        "wrote more than",
    ),
    "recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TEMPLATES))
def test_a_hostile_template_is_stopped_with_a_message(case):
    source, expected = HOSTILE_TEMPLATES[case]
    with pytest.raises(ChatTemplateError, match=expected):
        ChatTemplate(source).render([{"role": "user", "content": "x"}])
    # the thread that rendered is left clean: the next render works
    assert ChatTemplate("{{ messages[0].content }}").render([{"role": "user", "content": "ok"}]) == "ok"


def test_a_model_whose_template_fails_is_refused_before_llama_cpp_loads_it(tiny_model_path, tmp_path, monkeypatch):
    from engine import engine as engine_module
    from engine.engine import Engine
    from engine.errors import ModelLoadError
    from tests.engine.gguf_edits import edited_copy

    bad = edited_copy(
        tiny_model_path,
        tmp_path / "hostile.gguf",
        {"tokenizer.chat_template": (gguf.GGUFValueType.STRING, "{{ 'x' * 4000000000 }}")},
    )

    def no_llama_cpp(*args, **kwargs):
        raise AssertionError("llama.cpp was asked to load a model whose template fails")

    monkeypatch.setattr(engine_module, "LlamaRuntime", no_llama_cpp)
    with pytest.raises(ModelLoadError, match="chat template"):
        Engine(bad)
