"""bfloat16 on a CPU that emulates it is many times slower than float32: the run says so, once."""

from __future__ import annotations

from pathlib import Path

from fashion_lab.model.tf_settings import bf16_warning

XEON = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC_BF16 = "model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx512f avx512_bf16\n"
EPYC = "model name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n"


def no_gpu() -> bool:
    return False


def test_bfloat16_without_native_support_is_named_with_the_faster_choice():
    warning = bf16_warning("mixed_bfloat16", EPYC, no_gpu)
    assert "AMD EPYC" in warning and "trainer.precision=float32" in warning and "9-21x slower" in warning


def test_no_warning_where_bfloat16_is_native_or_not_asked_for():
    assert bf16_warning("mixed_bfloat16", XEON, no_gpu) is None  # AMX
    assert bf16_warning("mixed_bfloat16", EPYC_BF16, no_gpu) is None  # AVX512-BF16
    assert bf16_warning("mixed_bfloat16", EPYC, lambda: True) is None  # a GPU computes it
    assert bf16_warning("float32", EPYC, no_gpu) is None
    assert bf16_warning("mixed_bfloat16", "", no_gpu) is None  # nothing known about the CPU: nothing said


def test_a_bfloat16_run_warns_once_exactly_where_this_cpu_emulates_it(run_cli, tmp_path):
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    emulated = not {"avx512_bf16", "amx_bf16"} & set(flags.split())
    result = run_cli("train", "data=synthetic", "data.synthetic_train=300", "data.synthetic_test=50",
                     "trainer.epochs=1", "trainer.precision=mixed_bfloat16", "tracking=none", check=True)
    assert result.stderr.count("has no AVX512-BF16 or AMX") == (1 if emulated else 0), result.stderr[-2000:]
