"""StyleGAN2's discriminator, in rosinality/stylegan2-pytorch's layer list and key layout (its ``d``).

``convs.0`` a 1×1 ConvLayer from RGB; then one ResBlock per halving (two 3×3 ConvLayers, the second
blurred and strided, beside a blurred, strided 1×1 skip without bias or activation; their sum over √2)
down to 4×4; the minibatch standard deviation (groups of up to 4, one feature) appended as a channel;
``final_conv`` a 3×3 ConvLayer; ``final_linear`` two equalised linear layers (the first with the biased
leaky ReLU).  Every convolution's weight is scaled by 1/√fan_in at run time (equalised learning rate).
The blur and the activation are the generator's (engine/models/stylegan2.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.engine.models.stylegan2 import BLUR, Activate, Blur, EqualLinear

STDDEV_GROUP = 4


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    """[Blur when it downsamples], an equalised convolution, [the biased leaky ReLU]."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, downsample: bool = False, bias: bool = True,
                 activate: bool = True) -> None:  # fmt: skip
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR) - 2) + (kernel_size - 1)
            layers.append(Blur(((p + 1) // 2, p // 2), gain=1.0))
        stride, padding = (2, 0) if downsample else (1, kernel_size // 2)
        layers.append(
            EqualConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias and not activate)
        )
        if activate:
            layers.append(Activate(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class StyleGAN2Discriminator(nn.Module):
    """image (N, 3, size, size) → one logit per image.  ``channels``: the widths at 4, 8, … ``size`` px
    (the generator's table)."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        ch = list(channels)
        convs: list[nn.Module] = [ConvLayer(3, ch[-1], 1)]
        for level in range(len(ch) - 1, 0, -1):
            convs.append(ResBlock(ch[level], ch[level - 1]))
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(ch[0] + 1, ch[0], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[0] * 16, ch[0], activate=True), EqualLinear(ch[0], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        n, c, h, w = out.shape
        # groups of 4 as in the reference; a last, smaller batch of an epoch (the reference drops it) in the
        # largest group size that divides it
        group = max(k for k in range(1, min(n, STDDEV_GROUP) + 1) if n % k == 0)
        stddev = out.view(group, -1, 1, c, h, w)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, stddev.repeat(group, 1, h, w)], 1)
        return self.final_linear(self.final_conv(out).reshape(n, -1))
