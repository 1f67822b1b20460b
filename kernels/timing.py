"""Timing on the GPU: the median of CUDA-event-timed calls (the kernel checks, ``bench``, the benchmarks)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def cuda_ms(fn: Callable[..., object], *args: object, reps: int = 20, warmup: int = 3) -> float:
    """Median milliseconds per call of ``fn(*args)`` on the current CUDA stream, timed with CUDA events."""
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]
