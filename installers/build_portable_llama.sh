#!/usr/bin/env bash
# A llama-cpp-python wheel that runs on other x86-64 CPUs than the one it was built on:
# no -march=native; the CPU backend is built once per instruction-set level (SSE4.2, AVX,
# AVX2, AVX-512, ...) as loadable modules, and ggml picks the best one at run time
# (engine/llama_runtime.py loads them from llama_cpp/lib). Cached in build/wheels.
# The `sapphirerapids` variant is removed from the wheel: it is the one built with llama.cpp's
# AMX kernels, which crash on these models (ggml-org/llama.cpp#20824); AMX CPUs then get the
# best AVX-512 variant. The app's kernel check (engine/kernel_check.py) still guards the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
OUT=build/wheels/portable
if ls "$OUT"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    echo "portable llama-cpp-python $VERSION: $(ls "$OUT"/llama_cpp_python-"$VERSION"-*.whl)"
    exit 0
fi
mkdir -p "$OUT"
# About 20-30 minutes on 2 cores: one CPU backend per variant.
BUILT=build/wheels/portable-with-amx
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON" \
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "${PYTHON:-python3}" -m pip wheel --no-deps --no-binary llama-cpp-python --no-cache-dir \
    "llama-cpp-python==$VERSION" -w "$BUILT"
"${PYTHON:-python3}" -m pip install --quiet wheel
UNPACKED=build/wheels/portable-unpacked
rm -rf "$UNPACKED"
"${PYTHON:-python3}" -m wheel unpack "$BUILT"/llama_cpp_python-"$VERSION"-*.whl -d "$UNPACKED"
find "$UNPACKED" -name '*sapphirerapids*' -print -delete
"${PYTHON:-python3}" -m wheel pack "$UNPACKED"/llama_cpp_python-"$VERSION" -d "$OUT"
rm -rf "$UNPACKED" "$BUILT"
