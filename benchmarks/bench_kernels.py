"""Instance-norm kernel benchmarks: fused ops against the unfused PyTorch layers.

On a CUDA GPU, for the ResNet trunk of 256², 512² and 1080p frames (N=1, C=256, H/4 × W/4), it times
with ``triton.testing.do_bench``:

- a device copy of the activation — the bandwidth ceiling for a memory-bound op;
- the unfused layers as the generator runs them (engine ``InstanceNorm2d`` then ReLU; ``skip + IN``);
- the fused custom ops on the Triton path (``instance_norm_act(relu)``, ``instance_norm_residual``);

and reports effective GB/s (the bytes the op must move: read x, read skip, write out), that as a
percentage of copy bandwidth, and the fused/unfused speed-up.  The ops are timed as fuse_kernels calls
them, so small shapes include the custom op's Python dispatch.

Without a GPU the Triton timings mean nothing (Triton's CPU interpreter is a debugger), so it times
the PyTorch reference path on a small shape and says so.

Run ``python benchmarks/bench_kernels.py [--dtype fp16|bf16|fp32]`` for the table, or
``python -m pytest benchmarks/bench_kernels.py`` for the pytest-benchmark suite.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import torch

from cyclestream.engine.models.norm import InstanceNorm2d
from cyclestream.kernels import instance_norm_act, instance_norm_residual

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

TRUNKS = {"256²": (1, 256, 64, 64), "512²": (1, 256, 128, 128), "1080p": (1, 256, 270, 480)}
CPU_SHAPE = (1, 256, 64, 64)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ON_GPU = torch.cuda.is_available()


@dataclass(frozen=True)
class Workload:
    """One op in its fused and unfused forms, and the bytes it must move."""

    name: str
    fused: Callable[[], torch.Tensor]
    unfused: Callable[[], torch.Tensor]
    bytes_moved: int


def workloads(shape: tuple[int, ...], dtype: torch.dtype, device: str, impl: str) -> list[Workload]:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, generator=g, device=device).to(dtype)
    skip = torch.randn(shape, generator=g, device=device).to(dtype)
    norm = InstanceNorm2d(shape[1])
    size = x.numel() * x.element_size()
    return [
        Workload(
            "IN+ReLU",
            lambda: instance_norm_act(x, "relu", impl=impl),
            lambda: torch.relu(norm(x)),
            2 * size,
        ),
        Workload(
            "IN+residual",
            lambda: instance_norm_residual(x, skip, impl=impl),
            lambda: skip + norm(x),
            3 * size,
        ),
    ]


def _gbps(nbytes: int, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9


def gpu_table(dtype: torch.dtype) -> None:
    from triton.testing import do_bench

    name = torch.cuda.get_device_name()
    print(f"{name}, {dtype}; GB/s = bytes the op must move / time; copy = x → out device copy")
    print(
        f"{'shape':>7} {'op':>12} {'copy GB/s':>10} {'unfused ms':>11} {'fused ms':>9} {'fused GB/s':>11} "
        f"{'% copy':>7} {'speed-up':>9}"
    )
    for label, shape in TRUNKS.items():
        x = torch.empty(shape, device="cuda", dtype=dtype)
        out = torch.empty_like(x)
        copy_ms = do_bench(lambda x=x, out=out: out.copy_(x))
        copy_gbps = _gbps(2 * x.numel() * x.element_size(), copy_ms)
        for w in workloads(shape, dtype, "cuda", "triton"):
            fused_ms, unfused_ms = do_bench(w.fused), do_bench(w.unfused)
            fused_gbps = _gbps(w.bytes_moved, fused_ms)
            print(
                f"{label:>7} {w.name:>12} {copy_gbps:>10.0f} {unfused_ms:>11.4f} {fused_ms:>9.4f} "
                f"{fused_gbps:>11.0f} {100 * fused_gbps / copy_gbps:>6.0f}% {unfused_ms / fused_ms:>8.2f}×"
            )


def cpu_table(dtype: torch.dtype, repeats: int = 10) -> None:
    print(
        f"No CUDA device: the Triton kernels need a GPU to benchmark (their CPU interpreter is for "
        f"tests).\nTiming the PyTorch reference path on {'×'.join(map(str, CPU_SHAPE))}, {dtype}."
    )
    for w in workloads(CPU_SHAPE, dtype, "cpu", "reference"):
        times = {}
        for kind, fn in (("fused (reference)", w.fused), ("unfused", w.unfused)):
            fn()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            times[kind] = (time.perf_counter() - start) / repeats * 1e3
        print(f"{w.name:>12}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in times.items()))


# ----------------------------------------------------------------------------------------------------
# pytest-benchmark suite


def _cases() -> list[Any]:
    if ON_GPU:
        return [pytest.param(shape, "cuda", "triton", id=label) for label, shape in TRUNKS.items()]
    return [pytest.param(CPU_SHAPE, "cpu", "reference", id="cpu-reference-only")]


def _synchronized(fn: Callable[[], torch.Tensor], device: str) -> Callable[[], None]:
    def run() -> None:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()

    return run


@pytest.mark.parametrize("variant", ["fused", "unfused"])
@pytest.mark.parametrize("op", ["IN+ReLU", "IN+residual"])
@pytest.mark.parametrize(("shape", "device", "impl"), _cases())
def test_instance_norm(
    benchmark: BenchmarkFixture, shape: tuple[int, ...], device: str, impl: str, op: str, variant: str
) -> None:
    """One op at one trunk size; ``extra_info`` carries GB/s.  On CPU: the reference path only."""
    dtype = torch.float16 if ON_GPU else torch.float32
    (w,) = [w for w in workloads(shape, dtype, device, impl) if w.name == op]
    fn = w.fused if variant == "fused" else w.unfused
    benchmark.group = f"{op} {'×'.join(map(str, shape))} {device}"
    benchmark.extra_info["path"] = impl if variant == "fused" else "unfused PyTorch"
    benchmark(_synchronized(fn, device))
    benchmark.extra_info["GB/s"] = round(w.bytes_moved / benchmark.stats.stats.mean / 1e9, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16" if ON_GPU else "fp32")
    args = parser.parse_args()
    if ON_GPU:
        gpu_table(DTYPES[args.dtype])
    else:
        cpu_table(DTYPES[args.dtype])


if __name__ == "__main__":
    main()
