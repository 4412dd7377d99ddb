"""Which numeric precision this machine trains fastest in: what `precision="auto"` means.

bfloat16 pays only where the hardware computes it natively. Measured with
`benchmarks/train_speed.py` (full-width airbench, batch 512, 2 cores):
- AMD EPYC Zen 5 (AVX-512 BF16): mixed_bfloat16 ~1.7x the images/s of float32;
- AMD EPYC Zen 3 (AVX2 only): mixed_bfloat16 10 images/s, float32 104: 10x slower, because
  every bfloat16 operation is emulated. A profile that hard-codes bfloat16 turns a 55-minute
  run into a 9-hour one on such a machine;
- Intel Xeon with AMX (Sapphire/Emerald Rapids): mixed_bfloat16 586 images/s, float32 296;
  oneDNN runs the bfloat16 matmuls on AMX tiles, so the same recipe trains about 1.9x as many
  images/s as on the Zen 5 (307 images/s in a whole run).

`compute_tier` names these three cases, so that a profile can keep its time budget on each
(`relabel.config.TIER_BUDGETS`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

Precision = Literal["float32", "mixed_bfloat16"]
# float32: no native bfloat16; bfloat16: native bfloat16 vector units (AVX-512 BF16) or GPU
# tensor cores; amx: a CPU with AMX bfloat16 matrix tiles.
ComputeTier = Literal["float32", "bfloat16", "amx"]

# x86 flags (as /proc/cpuinfo spells them) of CPUs whose oneDNN kernels run bfloat16 natively.
NATIVE_BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
AMX_BFLOAT16_CPU_FLAG = "amx_bf16"
# Ampere (compute capability 8.0) and newer GPUs have bfloat16 tensor cores.
MIN_BFLOAT16_COMPUTE_CAPABILITY = (8, 0)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags Linux reports; empty where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def gpu_compute_capabilities(dev: Path = Path("/dev")) -> list[tuple[int, int]]:
    """Compute capability of each GPU TensorFlow sees (empty on a CPU-only machine).

    TensorFlow trains only on NVIDIA GPUs, which need the driver's /dev/nvidia* nodes; without
    them it is not imported (5-6 s that a cached rerun would otherwise spend on this question).
    """
    if not any(dev.glob("nvidia[0-9]*")):
        return []
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        capabilities.append(tuple(capability) if capability else (0, 0))
    return capabilities


def fastest_precision(flags: frozenset[str], gpus: list[tuple[int, int]]) -> Precision:
    """mixed_bfloat16 where training runs on hardware with native bfloat16, else float32."""
    if gpus:  # TensorFlow trains on the GPUs, so only they count
        native = all(capability >= MIN_BFLOAT16_COMPUTE_CAPABILITY for capability in gpus)
    else:
        native = bool(flags & NATIVE_BFLOAT16_CPU_FLAGS)
    return "mixed_bfloat16" if native else "float32"


def compute_tier(flags: frozenset[str], gpus: list[tuple[int, int]]) -> ComputeTier:
    """What precision "auto" trains on: float32, native bfloat16, or bfloat16 on AMX tiles."""
    if fastest_precision(flags, gpus) == "float32":
        return "float32"
    if not gpus and AMX_BFLOAT16_CPU_FLAG in flags:
        return "amx"
    return "bfloat16"


@functools.cache
def machine_tier() -> ComputeTier:
    """`compute_tier` of this machine."""
    return compute_tier(cpu_flags(), gpu_compute_capabilities())


AUTO_PRECISION_REASONS: dict[ComputeTier, str] = {
    "float32": "no native bfloat16 here (that needs an AVX-512 BF16 or AMX CPU, or an Ampere "
               "or newer GPU); emulated, it trains ~10x slower",
    "bfloat16": "this machine computes bfloat16 natively",
    "amx": "this machine computes bfloat16 natively, on AMX tiles",
}


@functools.cache
def resolve_precision(requested: str) -> Precision:
    """`requested` itself, or for "auto" the fastest precision on this machine."""
    if requested == "auto":  # derived from the tier: one reading of the hardware
        return "float32" if machine_tier() == "float32" else "mixed_bfloat16"
    if requested not in ("float32", "mixed_bfloat16"):
        raise ValueError(f"precision: expected auto, float32 or mixed_bfloat16, got {requested!r}")
    return requested  # type: ignore[return-value]


def precision_note(requested: str) -> str:
    """One log line: the precision training runs in, and for "auto" why."""
    resolved = resolve_precision(requested)
    if requested != "auto":
        return f"training precision: {resolved}"
    why = AUTO_PRECISION_REASONS[machine_tier()]
    return f"training precision: {resolved} (auto: {why})"
