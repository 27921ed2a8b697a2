"""The machine a benchmark ran on, printed and kept in its JSON line.

Machines of this project's kind differ (AMD with AVX-512, Intel Xeons with AMX), and
llama.cpp's speed depends on which kernels the build and the CPU allow, so every figure
names both.
"""

from __future__ import annotations

import platform
from pathlib import Path

from app.hardware import cpu_flags
from engine.kernel_check import llama_system_info

# The flags llama.cpp's x86 kernels care about.
_FLAGS = ("avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_int8")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_figures() -> dict:
    flags = cpu_flags()
    return {
        "cpu": _cpu_name(),
        "cpu_flags": [f for f in _FLAGS if f in flags],
        "cpu_has_amx": "amx_int8" in flags,
        "llama_build": " ".join(llama_system_info().split()),
    }


def describe(figures: dict) -> str:
    amx = "with AMX" if figures["cpu_has_amx"] else "no AMX"
    return f"CPU: {figures['cpu']} ({amx}; {' '.join(figures['cpu_flags'])})\nllama.cpp: {figures['llama_build']}"
