"""How much work a generator does per frame, and how much this machine can do per second.

MACs are counted from the graph itself (forward hooks on every convolution), bytes as the minimum a
frame must move (uint8 frame in and out, plus the weights once per batch); the peaks are measured
here: a large matmul (fp32 and bf16) and a large copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from cyclestream.engine.backends.tensors import padded_size


def count_macs(generator: nn.Module, height: int, width: int, multiple: int) -> int:
    """Multiply-accumulates of one forward pass on one frame padded to ``multiple``."""
    h, w = padded_size(height, width, multiple)
    total = 0

    def conv_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d | nn.ConvTranspose2d)
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        if isinstance(module, nn.ConvTranspose2d):  # every input element meets every kernel tap once
            total += inputs[0].numel() * module.out_channels // module.groups * kh * kw
        else:
            total += output.numel() * per_output

    hooks = [
        m.register_forward_hook(conv_hook) for m in generator.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    try:
        with torch.inference_mode():
            generator(torch.zeros(1, 3, h, w, device=next(generator.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def min_bytes_per_frame(generator: nn.Module, height: int, width: int, *, batch: int, weight_bytes: int = 4) -> float:
    """Frame in and out as uint8, weights read once per batch."""
    weights = sum(p.numel() for p in generator.parameters()) * weight_bytes
    return 2 * 3 * height * width + weights / batch


@dataclass(frozen=True)
class Peaks:
    fp32_gflops: float
    bf16_gflops: float
    copy_gbps: float


def _best_seconds(fn: object, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best


def _conv_gflops(dtype: torch.dtype, side: int) -> float:
    """A 256-channel 3x3 convolution, the generator's own hot loop (oneDNN often beats sgemm here)."""
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(1, 256, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv(x)
        seconds = _best_seconds(lambda: conv(x))
    return 2 * 256 * 256 * 9 * side * side / seconds / 1e9


def measure_peaks(n: int = 2048, copy_mb: int = 256) -> Peaks:
    """This machine's compute peak (the best of a large matmul and a large 3x3 convolution, in fp32
    and bf16) and copy bandwidth, best of a few runs each."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    a.mm(b)
    side = 64 if n >= 2048 else 32
    fp32 = max(2 * n**3 / _best_seconds(lambda: a.mm(b)) / 1e9, _conv_gflops(torch.float32, side))
    a16, b16 = a.bfloat16(), b.bfloat16()
    a16.mm(b16)
    bf16 = max(2 * n**3 / _best_seconds(lambda: a16.mm(b16)) / 1e9, _conv_gflops(torch.bfloat16, side))
    src = torch.empty(copy_mb * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    copy = 2 * src.numel() * 4 / _best_seconds(lambda: dst.copy_(src)) / 1e9  # read + write
    return Peaks(round(fp32, 1), round(bf16, 1), round(copy, 1))
