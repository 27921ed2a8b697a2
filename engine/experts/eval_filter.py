"""An eval callback that forwards only the wanted nodes' asks to a Python one (eval_filter.c).

llama.cpp asks the callback about each of the graph's nodes every token; answering the
asks about nodes nobody wants in C saves a ctypes round trip per node. Where the compiled
filter is missing (a build without a C compiler), the Python callback is used unfiltered.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
from collections.abc import Iterable
from pathlib import Path

NAME_BYTES = 64  # GGML_MAX_NAME, as in eval_filter.c


class _Filter(ctypes.Structure):
    _fields_ = [
        ("forward", ctypes.c_void_p),
        ("get_name", ctypes.c_void_p),
        ("n_slots", ctypes.c_uint32),
        ("slots", ctypes.c_void_p),
    ]


def fnv1a(name: bytes) -> int:
    """The 32-bit FNV-1a hash eval_filter.c places and finds names by."""
    h = 2166136261
    for byte in name:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def compiled_library() -> ctypes.CDLL | None:
    """The compiled filter next to this file (setuptools names it like an extension module)."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(__file__).with_name("_eval_filter" + suffix)
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            lib.eval_filter_callback.restype = ctypes.c_bool
            lib.eval_filter_callback.argtypes = [ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p]
            return lib
    return None


class EvalFilter:
    """`callback` and `user_data` for llama_context_params' cb_eval and cb_eval_user_data:
    `forward` (a ctypes ggml_backend_sched_eval_callback, called with no user data) is asked
    only about the nodes named in `wanted`; the others are not needed, and computing goes on
    after them. Keep this object alive as long as the context."""

    def __init__(self, lib: ctypes.CDLL, forward, get_name, wanted: Iterable[bytes]) -> None:
        names = set(wanted)
        if any(len(name) >= NAME_BYTES or not name for name in names):
            raise ValueError("node names are 1 to 63 bytes")
        n_slots = 1 << max(4, (2 * len(names)).bit_length())  # at most half full
        self._slots = (ctypes.c_char * NAME_BYTES * n_slots)()
        for name in names:
            i = fnv1a(name) & (n_slots - 1)
            while self._slots[i].value:
                i = (i + 1) & (n_slots - 1)
            self._slots[i].value = name
        self._forward = forward  # (referenced by the struct through a bare pointer)
        self._filter = _Filter(
            ctypes.cast(forward, ctypes.c_void_p).value,
            ctypes.cast(get_name, ctypes.c_void_p).value,
            n_slots,
            ctypes.addressof(self._slots),
        )
        self.callback = type(forward)(ctypes.cast(lib.eval_filter_callback, ctypes.c_void_p).value)
        self.user_data = ctypes.cast(ctypes.pointer(self._filter), ctypes.c_void_p)
