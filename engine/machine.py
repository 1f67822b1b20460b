"""What machine a measurement was taken on: every benchmark report carries this."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def _cpuinfo(key: str) -> str | None:
    """The value of the first ``key`` line of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on Arm); empty where /proc/cpuinfo is not."""
    return set((_cpuinfo("flags") or _cpuinfo("Features") or "").split())


BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # int8 dot products summed in 32 bits
ARM_DOT_FLAGS = frozenset({"asimddp", "i8mm"})


def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX-512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & BF16_FLAGS)


def cpu_int8() -> str | None:
    """The CPU's fast int8 path: "vnni" (AVX-512-VNNI, AVX-VNNI, AMX-INT8), "avx2" (u8×s8 products summed in
    16 bits, which saturate for full 8-bit weights: quantisers keep weights to 7 bits there), "dot" (Arm dot
    product); None when int8 would be no faster than fp32."""
    flags = cpu_flags()
    if flags & VNNI_FLAGS:
        return "vnni"
    if "avx2" in flags:
        return "avx2"
    return "dot" if flags & ARM_DOT_FLAGS else None


def int8_saturates() -> bool:
    """Whether this CPU's int8 products saturate with full 8-bit weights (x86 without VNNI)."""
    return cpu_int8() == "avx2"


# The cost of bf16 without the instructions for it, as measured on a 2-core AVX2 EPYC: the official 9-block
# generator ran at 0.13x its fp32 speed (a 512² bf16 matmul took 9x the fp32 one).
def reduced_precision_warning(precision: str, device: str) -> str | None:
    """One line for ``precision`` asked for on a ``device`` that has no fast path for it, else None (fp16 on a
    CPU is refused by the backends themselves)."""
    if not device.startswith("cpu"):
        return None
    where = f"this CPU ({cpu_model()})"
    if precision == "bf16" and not cpu_has_bf16():
        return (f"--precision bf16: {where} has no AVX-512-BF16 or AMX, so bf16 is emulated and runs several "
                "times slower than fp32 (0.13x on a 2-core AVX2 EPYC); use --precision auto or fp32")
    if precision == "int8" and cpu_int8() is None:
        return f"--precision int8: {where} has no int8 dot-product instructions (AVX2, VNNI); use --precision auto"
    return None


def describe_machine() -> dict[str, Any]:
    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "isa": sorted(f for f in flags if f in {"avx2", "avx512f", *BF16_FLAGS, *VNNI_FLAGS, *ARM_DOT_FLAGS}),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def one_line(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ", no GPU"
    return (
        f"{info['cpu']} ({info['cores']} cores, {info['torch_threads']} torch threads, "
        f"{' '.join(info['isa']) or 'no AVX'}){gpu}; torch {info['torch']}"
    )
