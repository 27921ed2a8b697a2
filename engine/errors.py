"""Errors raised by the engine layer.

Each also subclasses a built-in so callers that only know the standard library can
still catch them sensibly (the huggingface_hub habit).
"""


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ModelLoadError(EngineError, ValueError):
    """A model file is missing, unreadable, corrupt or not a SmallThinker GGUF."""


class SyntheticModelError(EngineError, ValueError):
    """The synthetic model writer was asked for something it cannot write."""
