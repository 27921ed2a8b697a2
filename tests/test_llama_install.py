"""installers/install_llama.py: the build options it asks for, and the check of what got installed."""

from __future__ import annotations

from installers.install_llama import build_options, check_features, cmake_args

SAPPHIRE_RAPIDS = {
    "sse4_2", "avx", "f16c", "fma", "bmi2", "avx2", "avx_vnni", "avx512f", "avx512cd", "avx512vl", "avx512dq",
    "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
}  # fmt: skip


def test_an_amx_cpu_gets_every_avx512_extension_and_no_amx():
    options = build_options(SAPPHIRE_RAPIDS)
    assert all(options[name] for name in ("GGML_AVX2", "GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16"))
    assert not any(options[name] for name in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"))
    args = cmake_args(options)
    assert args.startswith("-DGGML_NATIVE=OFF ") and "-DGGML_AMX_INT8=OFF" in args


def test_a_cpu_without_avx2_or_full_avx512_gets_them_switched_off():
    # With GGML_NATIVE=OFF ggml turns AVX2 on by default; it must be off where the CPU lacks it.
    options = build_options({"sse4_2", "avx", "avx512f"})  # AVX-512F alone is not ggml's AVX512 group
    assert options["GGML_AVX"] and not options["GGML_AVX2"] and not options["GGML_AVX512"]
    assert "-DGGML_AVX2=OFF" in cmake_args(options)


def test_the_check_refuses_an_amx_build_and_a_missing_feature():
    options = build_options(SAPPHIRE_RAPIDS)
    good = "CPU : AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | "
    good += "AVX512_VNNI = 1 | AVX512_BF16 = 1 | REPACK = 1 |"
    assert check_features(good, options) == []
    problems = check_features(good.replace("REPACK", "AMX_INT8 = 1 | REPACK"), options)
    assert len(problems) == 1 and "AMX" in problems[0]
    problems = check_features(good.replace("AVX512_BF16 = 1 | ", ""), options)
    assert problems == ["AVX512_BF16 was asked for but is not in the build"]
