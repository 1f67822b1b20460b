"""TransformerNet: fast neural style (Johnson et al. 2016), key for key pytorch/examples' ``fast_neural_style``.

Layer list (attribute names are the state-dict keys): ``conv1`` 9×9 (3 → ngf), ``in1``; ``conv2`` 3×3
stride 2, ``in2``; ``conv3`` 3×3 stride 2, ``in3``; ``res1..resN`` residual blocks (``conv1``, ``in1``,
``conv2``, ``in2`` each); ``deconv1`` and ``deconv2``: nearest ×2 upsampling then a 3×3 convolution,
each followed by ``in4`` / ``in5``; ``deconv3`` 9×9 (ngf → 3).  Every convolution is reflection-padded
by half its kernel and held as ``<layer>.conv2d``; every instance norm is affine; ReLU after each
norm except the second of a residual block; no output non-linearity.  Input and output are RGB on the
0..255 scale (``value_range`` (0, 255)): frames go in as their pixel values, and come out rounded and
clamped.

Published files (``*.model``, ``*.pth``) are plain state dicts; those saved by old PyTorch carry
``running_mean`` / ``running_var`` in every instance norm, which nothing here reads (the loader drops
them, as the reference's own ``stylize`` does).

``FAMILY``: the ``fast_style`` family, recognised by these keys and shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Family, FamilySpec, Shapes

PIXEL_RANGE = (0.0, 255.0)


@dataclass(frozen=True, kw_only=True)
class FastStyleSpec(FamilySpec):
    """A TransformerNet: ``ngf`` channels at full resolution (32 in the published files; 2× and 4× after
    the two stride-2 convolutions), ``n_blocks`` residual blocks (5), ``input_nc`` image channels (3)."""

    kind: str = "fast_style"
    input_nc: int = 3
    ngf: int = 32
    n_blocks: int = 5

    def __post_init__(self) -> None:
        if self.kind != "fast_style":
            raise CheckpointError(f"a fast neural style spec of kind {self.kind!r}")
        for name, least in (("input_nc", 1), ("ngf", 1), ("n_blocks", 0)):
            value = getattr(self, name)
            if type(value) is not int or value < least:
                raise CheckpointError(f"invalid fast neural style {name}={value!r} (an integer >= {least})")


class PaddedConv(nn.Module):
    """Reflection padding by half the kernel, then the convolution (``conv2d``); ``upsample``: nearest
    ×upsample first."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = nn.functional.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.conv2d(self.pad(x))


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True)


class StyleBlock(nn.Module):
    """x + in2(conv2(relu(in1(conv1(x))))), 3×3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = PaddedConv(channels, channels, 3)
        self.in1 = _norm(channels)
        self.conv2 = PaddedConv(channels, channels, 3)
        self.in2 = _norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(torch.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """The fast neural style generator of ``spec``: pixel values (N, 3, H, W) in, pixel values out."""

    def __init__(self, spec: FastStyleSpec | None = None) -> None:
        super().__init__()
        spec = spec or FastStyleSpec()
        self.spec = spec
        c = spec.ngf
        self.conv1, self.in1 = PaddedConv(spec.input_nc, c, 9), _norm(c)
        self.conv2, self.in2 = PaddedConv(c, 2 * c, 3, stride=2), _norm(2 * c)
        self.conv3, self.in3 = PaddedConv(2 * c, 4 * c, 3, stride=2), _norm(4 * c)
        for i in range(1, spec.n_blocks + 1):
            self.add_module(f"res{i}", StyleBlock(4 * c))
        self.deconv1, self.in4 = PaddedConv(4 * c, 2 * c, 3, upsample=2), _norm(2 * c)
        self.deconv2, self.in5 = PaddedConv(2 * c, c, 3, upsample=2), _norm(c)
        self.deconv3 = PaddedConv(c, spec.input_nc, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.in1(self.conv1(x)))
        y = torch.relu(self.in2(self.conv2(y)))
        y = torch.relu(self.in3(self.conv3(y)))
        for i in range(1, self.spec.n_blocks + 1):
            y = getattr(self, f"res{i}")(y)
        y = torch.relu(self.in4(self.deconv1(y)))
        y = torch.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


# ----------------------------------------------------------------------------- the family


def recognise(shapes: Shapes) -> FastStyleSpec | None:
    """The TransformerNet with these keys and shapes; None for keys of another family."""
    if "conv1.conv2d.weight" not in shapes or "deconv3.conv2d.weight" not in shapes:
        return None
    first, last = shapes["conv1.conv2d.weight"], shapes["deconv3.conv2d.weight"]
    if len(first) != 4 or tuple(first[2:]) != (9, 9) or len(last) != 4 or tuple(last[2:]) != (9, 9):
        raise CheckpointError("the first and last convolutions of a fast neural style TransformerNet are 9x9")
    blocks = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"res(\d+)\.", k))})
    if blocks != list(range(1, len(blocks) + 1)):
        raise CheckpointError(f"fast neural style residual blocks are not res1..resN (found res{blocks})")
    return FastStyleSpec(input_nc=int(first[1]), ngf=int(first[0]), n_blocks=len(blocks))


FAMILY = Family(
    name="fast_style",
    description="fast neural style TransformerNet (Johnson et al.), image to stylised image on pixel values",
    spec_type=FastStyleSpec,
    build=TransformerNet,
    official_name=lambda spec: "transformer_net" if spec.n_blocks == 5 else f"transformer_net_{spec.n_blocks}blocks",
    recognise=recognise,
    published_by="pytorch/examples fast_neural_style",
    value_range=PIXEL_RANGE,
    size_multiple=lambda spec: 4,  # two stride-2 convolutions, two ×2 upsamplings
    min_side=lambda spec: 5,  # padded to 8: the innermost 2×2 still reflects and normalises
    min_tensors=lambda spec: spec.n_blocks,
)
