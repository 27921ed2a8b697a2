"""Render a conversation with the Jinja chat template a GGUF file carries.

Rendering here (rather than through llama-cpp-python's chat handlers) lets the engine
see the exact prompt text, tokenize it once, and find the prefix it shares with the
previous turn.
"""

from __future__ import annotations

import ctypes
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import EngineError

# A template is code from a downloaded file: it may loop for ever or build gigabytes of text.
# Jinja's sandbox stops attribute tricks; these bound time and size (issue 17, item 11).
RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 16 << 20  # far above any context's worth of text
MAX_VALUE_CHARS = 1 << 20  # one string or list built by `*`, `+` or a padding call


class ChatTemplateError(EngineError, ValueError):
    """The model's chat template is missing or failed to render."""


def _raise(message: str) -> None:
    raise ChatTemplateError(f"the model's chat template refused the conversation: {message}")


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _RenderTimeoutError(Exception):
    """Raised inside the rendering thread when it ran past RENDER_SECONDS."""


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Refuses operations whose result would be huge before Python allocates it."""

    intercepted_binops = frozenset(["*", "+"])

    def call_binop(self, context, operator, left, right):
        a, b = (right, left) if isinstance(left, int) else (left, right)  # 3 * "x" is "x" * 3
        sized = str | list | tuple
        if (
            operator == "*" and isinstance(a, sized) and isinstance(b, int) and len(a) * max(b, 0) > MAX_VALUE_CHARS
        ) or (operator == "+" and isinstance(a, sized) and isinstance(b, sized) and len(a) + len(b) > MAX_OUTPUT_CHARS):
            raise SecurityError("the template builds a value too large")
        return super().call_binop(context, operator, left, right)

    def call(self, __context, __obj, *args, **kwargs):
        # str.center(10**9), "x"|indent(10**9), range(...) and the like: no huge sizes at all
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE_CHARS:
                raise SecurityError(f"the template calls a function with {value:,}")
        return super().call(__context, __obj, *args, **kwargs)


def _set_async_exc(thread_id: int, exc_type) -> None:
    """Raise `exc_type` in thread `thread_id` at its next Python instruction; None clears it."""
    exc = ctypes.py_object(exc_type) if exc_type is not None else None  # None passes NULL
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)


class _Deadline:
    """Raises _RenderTimeoutError in the calling thread after `seconds` (Jinja renders in pure
    Python, so the exception lands inside whatever loop the template is stuck in)."""

    def __init__(self, seconds: float) -> None:
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._done = self._fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            if not self._done:
                self._fired = True
                _set_async_exc(self._thread_id, _RenderTimeoutError)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> bool:
        with self._lock:
            self._done = True
        self._timer.cancel()
        if self._fired:
            _set_async_exc(self._thread_id, None)  # one still pending must not land later
        return False


class ChatTemplate:
    """A compiled chat template plus the special tokens it may refer to."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        if not source.strip():
            raise ChatTemplateError("the model file has no chat template")
        env = _BoundedSandbox(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template does not compile: {exc}") from exc
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        variables = dict(
            messages=[dict(m) for m in messages],
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=add_generation_prompt,
            raise_exception=_raise,
            strftime_now=lambda fmt: datetime.now().strftime(fmt),
        )
        try:
            with _Deadline(RENDER_SECONDS):
                return self._bounded_render(variables)
        except ChatTemplateError:
            raise
        except _RenderTimeoutError:
            raise ChatTemplateError(
                f"the model's chat template took more than {RENDER_SECONDS:.0f} s to render; "
                "the model file's template is broken or hostile"
            ) from None
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template failed: {exc}") from exc
        except (ArithmeticError, MemoryError, RecursionError, TypeError, ValueError, LookupError) as exc:
            raise ChatTemplateError(f"the model's chat template failed: {type(exc).__name__}: {exc}") from None

    def _bounded_render(self, variables: dict) -> str:
        pieces, size = [], 0
        for piece in self._template.generate(**variables):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise ChatTemplateError(
                    f"the model's chat template wrote more than {MAX_OUTPUT_CHARS:,} characters; "
                    "the model file's template is broken or hostile"
                )
            pieces.append(piece)
        return "".join(pieces)


def check_chat_template(source: str) -> None:
    """Compile the template and render a one-message chat under the limits, before any model
    weights are loaded: a template that cannot do that would fail every chat anyway."""
    ChatTemplate(source, eos_token="<|im_end|>").render([{"role": "user", "content": "Hello"}])
