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
# llama-cpp-python's portable wheel installs the CPU variants in site-packages/bin.
BACKEND_DIRS = (LIB_DIR, Path(llama_cpp.__file__).parent.parent / "bin")


def library(name: str) -> ctypes.CDLL:
    """`name` is ggml's base name, e.g. "ggml-base": the copy llama.cpp itself uses.

    A bundle may hold the library twice (libggml.so and libggml.so.0 as separate files);
    opening the other copy would give a second ggml with backends of its own, so the file
    already mapped into the process wins.
    """
    filename = {"win32": f"{name}.dll", "darwin": f"lib{name}.dylib"}.get(sys.platform, f"lib{name}.so")
    return ctypes.CDLL(str(_loaded(filename) or LIB_DIR / filename))


def _loaded(filename: str) -> str | None:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                base = path.rsplit("/", 1)[-1]
                if base == filename or base.startswith(filename + "."):
                    return path
    except OSError:
        pass
    return None


@functools.cache
def load_backends() -> int:
    """Make sure a CPU backend is registered; return how many backends are."""
    ggml = library("ggml")
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    for folder in BACKEND_DIRS:
        if ggml.ggml_backend_reg_count() == 0 and folder.is_dir():
            ggml.ggml_backend_load_all_from_path(str(folder).encode())
            log.info("loaded ggml backends from %s", folder)
    return int(ggml.ggml_backend_reg_count())
