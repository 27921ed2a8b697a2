"""Install llama-cpp-python built for this CPU, without llama.cpp's AMX code, and check it.

Why not plain `pip install llama-cpp-python`: its default build is `-march=native`, which on a
CPU with AMX (Sapphire Rapids class Xeons) compiles llama.cpp's AMX matmul, and that segfaults
on the first decode of the SmallThinker models (ggml-org/llama.cpp#20824, never fixed). So the
build names every instruction set it uses (`GGML_NATIVE=OFF` plus the CPU's own AVX/AVX2/
AVX-512 extensions) and leaves AMX out; everything else (the repacked Q4_0 kernels) stays.

Why our own wheel folder: pip's wheel cache does not key on `CMAKE_ARGS`, so a machine that
once built this version with other options would silently reuse that build. Wheels are kept
under the user's cache folder, one folder per option set, and installed by path; afterwards
the installed library's own feature report is checked against what was asked for.

Usage: python installers/install_llama.py   (the Makefile runs it with the venv's Python)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# cpuinfo flag -> ggml CMake option. GGML_AVX512 stands for the F/CD/VL/DQ/BW group.
X86_OPTIONS = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_F16C": ("f16c",),
    "GGML_FMA": ("fma",),
    "GGML_BMI2": ("bmi2",),
    "GGML_AVX2": ("avx2",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
}
# Never built, whatever the CPU has: the crashing path.
AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
# What llama_print_system_info() calls each option's feature when it is compiled in.
FEATURE_NAMES = {
    "GGML_AVX": "AVX",
    "GGML_AVX2": "AVX2",
    "GGML_F16C": "F16C",
    "GGML_FMA": "FMA",
    "GGML_BMI2": "BMI2",
    "GGML_AVX_VNNI": "AVX_VNNI",
    "GGML_AVX512": "AVX512",
    "GGML_AVX512_VBMI": "AVX512_VBMI",
    "GGML_AVX512_VNNI": "AVX512_VNNI",
    "GGML_AVX512_BF16": "AVX512_BF16",
}


def llama_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"llama-cpp-python==([0-9.]+)"', text)
    if not match:
        raise SystemExit("pyproject.toml does not pin llama-cpp-python==X.Y.Z")
    return match.group(1)


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def build_options(flags: set[str]) -> dict[str, bool]:
    """Every x86 option set explicitly: with GGML_NATIVE=OFF ggml turns AVX2 and others on
    by default, which a CPU without them could not run."""
    options = {name: all(flag in flags for flag in needs) for name, needs in X86_OPTIONS.items()}
    options.update(dict.fromkeys(AMX_OPTIONS, False))
    return options


def cmake_args(options: dict[str, bool]) -> str:
    if not options:  # not x86-64 Linux: llama.cpp's native build has no AMX path there
        return ""
    return " ".join(["-DGGML_NATIVE=OFF"] + [f"-D{k}={'ON' if v else 'OFF'}" for k, v in options.items()])


def is_x86_linux() -> bool:
    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")


def wheel_folder(version: str, args: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(f"{version}|{args}|{platform.machine()}|{sys.version_info[:2]}".encode()).hexdigest()[:16]
    return cache / "smallthinker-desktop" / "llama-wheels" / key


def build_wheel(version: str, args: str, folder: Path) -> Path:
    wheels = sorted(folder.glob(f"llama_cpp_python-{version}-*.whl"))
    if wheels:
        return wheels[-1]
    folder.mkdir(parents=True, exist_ok=True)
    print(f"building llama-cpp-python {version} (about 5 minutes) with: {args or 'defaults'}", flush=True)
    env = dict(os.environ, CMAKE_ARGS=args, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir"]
        + ["--no-binary", "llama-cpp-python", f"llama-cpp-python=={version}", "-w", str(folder)],
        env=env,
        check=True,
    )
    return sorted(folder.glob(f"llama_cpp_python-{version}-*.whl"))[-1]


def system_info() -> str:
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the installed llama-cpp-python does not import:\n{done.stderr[-2000:]}")
    return done.stdout


def check_features(info: str, options: dict[str, bool]) -> list[str]:
    """Problems with the installed build: AMX compiled in, or a feature asked for missing."""
    problems = []
    if re.search(r"\bAMX_INT8 = 1\b", info):
        problems.append("it contains llama.cpp's AMX kernels (AMX_INT8 = 1), which crash on these models")
    for option, wanted in options.items():
        name = FEATURE_NAMES.get(option)
        if name and wanted and not re.search(rf"\b{name} = 1\b", info):
            problems.append(f"{name} was asked for but is not in the build")
    return problems


def main() -> int:
    version = llama_version()
    options = build_options(cpu_flags()) if is_x86_linux() else {}
    args = cmake_args(options)
    folder = wheel_folder(version, args)
    marker = Path(sys.prefix) / "llama-build.json"
    wanted = {"version": version, "cmake_args": args}
    installed = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
    if installed != wanted:
        wheel = build_wheel(version, args, folder)
        # Another build of the same version may be installed: pip would keep it.
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", "llama-cpp-python"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", str(wheel)], check=True)
    info = system_info()
    problems = check_features(info, options)
    if problems:
        marker.unlink(missing_ok=True)
        print("The installed llama-cpp-python is not the build asked for: " + "; ".join(problems), file=sys.stderr)
        print(f"Its report: {info.strip()}\nDelete {folder} and run make again.", file=sys.stderr)
        return 1
    marker.write_text(json.dumps(wanted), encoding="utf-8")
    print(f"llama-cpp-python {version}: {info.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
