"""Where llama.cpp keeps each weight: repacked into memory, or on the mapped file.

Repacked weights (llama.cpp's CPU_REPACK buffer: Q4_0 rows interleaved for its fastest
kernels) live in anonymous memory and cannot be evicted; mapped weights are file pages the
kernel and the expert manager can drop and re-read. Three layouts:

- REPACKED: everything llama.cpp can repack is (in memory, the fast kernels).
- EXPERTS_MAPPED: the experts stay on the mapped file, where the expert manager keeps them
  within the budget; the weights every token uses (attention, dense FFNs, the output matrix
  where it is Q4_0) are repacked. Measured on the synthetic 4B with nothing evicted, 2
  threads, the AMX Xeon: 16.2-17.6 tokens/s against 13.0-15.4 all mapped and 21.8-22.1
  all repacked (only the attention is Q4_0 there: the output matrix is Q6_K, which
  llama.cpp repacks only on ARM).
- MAPPED: nothing repacked (the safe kernels, or a build without the repack buffer).

llama.cpp takes a list of tensor-name patterns and buffer types (`tensor_buft_overrides`);
a tensor forced into CPU_REPACK that its repacker does not handle crashes the load, so the
pattern names exactly the tensors `ggml_repack_get_optimal_repack_type`
(ggml-cpu/repack.cpp) accepts: Q4_0 matrices used by a matrix product, with a row count
divisible by the interleave of this CPU's kernel. Other types stay mapped.
"""

from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from gguf.constants import GGMLQuantizationType

from engine.experts.map import EXPERT_TENSORS
from engine.ggml_libs import library
from engine.gguf_file import TensorInfo
from engine.model_info import ModelInfo

_CPU_DEVICE = 0  # enum ggml_backend_dev_type: GGML_BACKEND_DEVICE_TYPE_CPU
_REPACK_BUFFER = b"CPU_REPACK"
# Looked up by the token embedding with GET_ROWS, which the repack buffer does not serve.
_NOT_A_MATRIX_PRODUCT = {"token_embd"}


class WeightLayout(StrEnum):
    REPACKED = "repacked"
    EXPERTS_MAPPED = "experts-mapped"
    MAPPED = "mapped"


class _Override(ctypes.Structure):
    """struct llama_model_tensor_buft_override (llama.h)."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


@dataclass
class RepackOverrides:
    """A NULL-terminated override list for llama_model_params, and what it repacks."""

    tensors: list[TensorInfo]
    array: ctypes.Array  # keep alive as long as llama.cpp may read it (the load); it holds the pattern

    def pointer(self) -> ctypes.c_void_p:
        return ctypes.cast(self.array, ctypes.c_void_p)


def repack_row_multiple(system_info: str) -> int | None:
    """The row interleave of this build's Q4_0 repacked kernel; None: it has none.

    From llama.cpp's own feature report (`llama_print_system_info`), which is what its
    repacker tests at run time (compile-time flags of the CPU backend in use).
    """
    has = functools.partial(_has_feature, system_info)
    if not has("REPACK"):
        return None
    if has("AVX2"):
        return 8  # q4_0_8x8
    if has("NEON") and (has("MATMUL_INT8") or has("DOTPROD")):
        return 4  # q4_0_4x8 / q4_0_4x4
    return None


def _has_feature(system_info: str, name: str) -> bool:
    return re.search(rf"\b{name} = 1\b", system_info) is not None


def fixed_repackable(info: ModelInfo, row_multiple: int) -> list[TensorInfo]:
    """The non-expert tensors llama.cpp's repacker takes on this CPU."""
    found = []
    for tensor in info.tensors.values():
        parts = tensor.name.split(".")
        base = parts[-2] if len(parts) >= 2 else parts[0]
        if base in EXPERT_TENSORS or base in _NOT_A_MATRIX_PRODUCT:
            continue
        if tensor.ggml_type != GGMLQuantizationType.Q4_0 or len(tensor.dims) != 2:
            continue
        if tensor.dims[1] % row_multiple == 0:
            found.append(tensor)
    return found


def repack_overrides(info: ModelInfo, system_info: str) -> RepackOverrides | None:
    """Overrides that repack the non-expert weights; None when nothing would be."""
    multiple = repack_row_multiple(system_info)
    buft = _repack_buffer_type() if multiple else None
    if buft is None:
        return None
    tensors = fixed_repackable(info, multiple)
    if not tensors:
        return None
    # One anchored alternation: llama.cpp runs std::regex_search over every tensor name.
    pattern = ("^(" + "|".join(re.escape(t.name) for t in tensors) + ")$").encode()
    array = (_Override * 2)()
    array[0].pattern = pattern
    array[0].buft = buft
    return RepackOverrides(tensors, array)


@functools.cache
def _repack_buffer_type() -> int | None:
    """The CPU backend's CPU_REPACK buffer type (one of its "extra" buffer types), or None."""
    ggml = library("ggml")
    ggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    ggml.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    ggml.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ggml.ggml_backend_buft_name.restype = ctypes.c_char_p
    ggml.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    device = ggml.ggml_backend_dev_by_type(_CPU_DEVICE)
    if not device:
        return None
    address = ggml.ggml_backend_reg_get_proc_address(
        ggml.ggml_backend_dev_backend_reg(device), b"ggml_backend_dev_get_extra_bufts"
    )
    if not address:
        return None
    extra_bufts = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(address)(device)
    i = 0
    while extra_bufts and extra_bufts[i]:
        if ggml.ggml_backend_buft_name(extra_bufts[i]) == _REPACK_BUFFER:
            return extra_bufts[i]
        i += 1
    return None
