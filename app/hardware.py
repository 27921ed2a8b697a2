"""What this machine has that matters for choosing and running a model."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class HardwareProbe:
    total_ram_bytes: int
    available_ram_bytes: int
    free_disk_bytes: int  # where models are stored
    physical_cores: int
    logical_cores: int
    cpu_features: frozenset[str]  # of those that matter to llama.cpp: avx2, avx512, neon
    machine: str  # x86_64, arm64, ...


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the OS names them (lower case); empty where it cannot tell."""
    flags = ""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
                line = next((line for line in cpuinfo if line.startswith("flags")), "")
                flags = line.partition(":")[2]
        elif sys.platform == "darwin":
            flags = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                capture_output=True, text=True, timeout=5, check=False,
            ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(flags.lower().split())


def cpu_features() -> frozenset[str]:
    """AVX2 / AVX-512 / NEON, from the OS; empty where it cannot tell."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return frozenset({"neon"})  # NEON (ASIMD) is mandatory on 64-bit ARM
    words = cpu_flags()
    found = set()
    if "avx2" in words:
        found.add("avx2")
    if "avx512f" in words:
        found.add("avx512")
    return frozenset(found)


def probe_hardware(models_dir: Path) -> HardwareProbe:
    memory = psutil.virtual_memory()
    return HardwareProbe(
        total_ram_bytes=memory.total,
        available_ram_bytes=memory.available,
        free_disk_bytes=shutil.disk_usage(_existing_parent(models_dir)).free,
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        cpu_features=cpu_features(),
        machine=platform.machine(),
    )
