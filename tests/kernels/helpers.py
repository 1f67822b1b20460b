"""Inputs and tolerances shared by the kernel tests."""

from __future__ import annotations

import torch


def random_input(
    shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0, channels_last: bool = False
) -> torch.Tensor:
    """Random activations with a different mean and spread in every (n, c) row."""
    g = torch.Generator().manual_seed(seed)
    n, c = shape[:2]
    scale = 0.5 + 3 * torch.rand(n, c, 1, 1, generator=g)
    offset = 4 * torch.randn(n, c, 1, 1, generator=g)
    x = (torch.randn(shape, generator=g) * scale + offset).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """assert_close tolerances: 1e-5 for fp32, 1e-2 for fp16/bf16."""
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    return {"rtol": tol, "atol": tol}
