"""The one measuring harness: how long a call takes (host clock or CUDA events) and how far an output is
from its reference.  Used by ``cyclestream bench``, benchmarks/ (bench_backends.py, gpu_check.py), the
kernel checks and the backend tests, so every number in the README is measured the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from cyclestream.kernels.timing import cuda_ms

__all__ = ["cuda_ms", "frames_relative_l2", "relative_l2", "time_calls"]  # cuda_ms lives with the kernels


def time_calls(fn: Callable[[], object], warmup: int = 1, repeats: int = 5, min_time: float = 0.0) -> list[float]:
    """Seconds per call of ``fn()`` on the host clock: ``warmup`` untimed calls, then ``repeats`` rounds
    that each call ``fn`` until ``min_time`` has passed (at least once), every call timed on its own.
    ``fn`` must return only when its work is done (a backend's ``run`` returns host frames)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - start >= min_time:
                break
    return times


def relative_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (model outputs in [-1, 1])."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if out.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(out.shape)} vs {tuple(ref.shape)}")
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def frames_relative_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``relative_l2`` of two batches of uint8 frames, mapped back to the model's [-1, 1]."""
    return relative_l2(out.double() / 127.5 - 1, ref.double() / 127.5 - 1)
