"""ggml's shared libraries inside the llama_cpp package, and loading its CPU backends.

A portable build (installers/build_portable_llama.sh: GGML_BACKEND_DL with every CPU
variant) keeps one CPU backend per instruction-set level as a loadable module in
llama_cpp/lib. ggml looks for them beside the executable, which neither Python nor a frozen
app is, so they are loaded from that folder before the first model; ggml scores each
against the CPU and keeps the best. With the usual build the CPU backend is built in and
this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
from pathlib import Path

import llama_cpp

log = logging.getLogger(__name__)

LIB_DIR = Path(llama_cpp.__file__).parent / "lib"


def library(name: str) -> ctypes.CDLL:
    """`name` is ggml's base name, e.g. "ggml-base"."""
    filename = {"win32": f"{name}.dll", "darwin": f"lib{name}.dylib"}.get(sys.platform, f"lib{name}.so")
    return ctypes.CDLL(str(LIB_DIR / filename))


@functools.cache
def load_backends() -> int:
    """Make sure a CPU backend is registered; return how many backends are."""
    ggml = library("ggml")
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_reg_count() == 0:
        ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load_all_from_path(str(LIB_DIR).encode())
        log.info("loaded ggml backends from %s", LIB_DIR)
    return int(ggml.ggml_backend_reg_count())
