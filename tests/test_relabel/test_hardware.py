"""precision="auto": bfloat16 only on hardware that computes it natively."""

from __future__ import annotations

from pathlib import Path

import pytest

from relabel.hardware import (
    compute_tier,
    cpu_flags,
    fastest_precision,
    gpu_compute_capabilities,
    precision_note,
    resolve_precision,
)

ZEN3 = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})  # AMD EPYC Milan: AVX2 only
ZEN5 = ZEN3 | {"avx512f", "avx512_bf16"}  # AMD EPYC Turin: AVX-512 BF16, no AMX
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.mark.parametrize(("flags", "gpus", "expected"), [
    (ZEN3, [], "float32"),  # emulated bfloat16 measured 10x slower than float32 here
    (ZEN5, [], "mixed_bfloat16"),
    (SAPPHIRE_RAPIDS, [], "mixed_bfloat16"),
    (frozenset(), [], "float32"),  # no /proc/cpuinfo (macOS): never guess bfloat16
    (ZEN3, [(9, 0)], "mixed_bfloat16"),  # H100/H200
    (ZEN5, [(7, 5)], "float32"),  # a T4 trains, not the CPU: no bfloat16 tensor cores
    (ZEN3, [(8, 0), (7, 0)], "float32"),  # mirrored over GPUs: the slowest decides
])
def test_fastest_precision(flags: frozenset[str], gpus: list[tuple[int, int]],
                           expected: str) -> None:
    assert fastest_precision(flags, gpus) == expected


@pytest.mark.parametrize(("flags", "gpus", "expected"), [
    (ZEN3, [], "float32"),
    (ZEN5, [], "bfloat16"),
    (SAPPHIRE_RAPIDS, [], "amx"),
    (SAPPHIRE_RAPIDS, [(9, 0)], "bfloat16"),  # TensorFlow trains on the GPU, not the tiles
    (SAPPHIRE_RAPIDS, [(7, 5)], "float32"),
])
def test_compute_tier(flags: frozenset[str], gpus: list[tuple[int, int]],
                      expected: str) -> None:
    assert compute_tier(flags, gpus) == expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\n"
                       "flags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_explicit_precisions_are_kept_and_unknown_ones_refused() -> None:
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert resolve_precision("auto") in ("float32", "mixed_bfloat16")
    with pytest.raises(ValueError, match="expected auto, float32 or mixed_bfloat16"):
        resolve_precision("float16")


def test_the_log_line_says_why_for_auto() -> None:
    assert precision_note("float32") == "training precision: float32"
    assert precision_note("auto").startswith(f"training precision: {resolve_precision('auto')}"
                                             " (auto: ")


def test_no_nvidia_device_means_no_gpu_without_importing_tensorflow(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "null").touch()
    assert gpu_compute_capabilities(tmp_path) == []
    # In a fresh interpreter: answering costs no TensorFlow import on a CPU-only machine.
    code = ("import sys; from pathlib import Path; from relabel.hardware import "
            "gpu_compute_capabilities as g; assert g(Path(sys.argv[1])) == []; "
            "assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
