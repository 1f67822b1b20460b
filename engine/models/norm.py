"""Normalization layers of the official generators, with statistics kept in fp32.

``InstanceNorm2d`` is ``nn.InstanceNorm2d(affine=False, track_running_stats=False)`` as the official
``--norm instance`` builds it (so it has no state-dict keys), except that under bf16/fp16 it
computes in fp32 and casts back: half-precision statistics over 65k-element rows lose too much.
It is also the one place the fused kernels (cyclestream.engine.models.fuse) replace.
"""

from __future__ import annotations

import torch
from torch import nn


class InstanceNorm2d(nn.InstanceNorm2d):
    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps, affine=False, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x.float()).to(x.dtype)
        return super().forward(x)


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return InstanceNorm2d(channels)
    return nn.BatchNorm2d(channels)
