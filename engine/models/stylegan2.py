"""StyleGAN2Generator: rosinality/stylegan2-pytorch's ``Generator`` (the ``g_ema`` of its checkpoints),
in plain PyTorch (no custom CUDA op).

Layer list (state-dict keys as in the published checkpoints): ``style`` — PixelNorm, then ``n_mlp``
equalised linear layers with a scaled leaky ReLU (``style.1`` … ``style.N``, learning-rate multiplier
0.01); ``input.input`` a learned 4×4 constant; ``conv1`` a styled 3×3 convolution and ``to_rgb1``;
then per doubling two styled convolutions (``convs.2k``: upsampling, a transposed convolution and a
[1, 3, 3, 1] blur; ``convs.2k+1``) and a ``to_rgbs.k`` whose output is added to the upsampled skip
image; ``noises.noise_i`` the fixed noise of each styled convolution.  A styled convolution modulates
its weight by an affine map of the style vector w, demodulates it (unit norm per output channel), adds
scaled noise and applies a biased leaky ReLU (slope 0.2) times √2.

The channels of each resolution are read from the weights (the published table is 512 up to 32 px,
then 256, 128, 64, 32, 16 times ``channel_multiplier``), so the size, style size, mapping depth and
channels all come from the keys and shapes.

``FAMILY``: the ``stylegan2`` family.  Its one input is a latent z (no image input): ``cyclestream
generate`` walks it, every job that translates frames refuses it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Conditioning, Family, FamilySpec, Shapes

BLUR = (1.0, 3.0, 3.0, 1.0)
LEAK = 0.2
GAIN = math.sqrt(2.0)
MEAN_LATENT_SAMPLES = 4096  # z drawn to estimate the mean w that truncation pulls towards


def published_channels(size: int, channel_multiplier: int = 2) -> tuple[int, ...]:
    """The reference's channels of each resolution 4, 8, … ``size``."""
    table = {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return tuple(512 if 4 * 2**i <= 32 else table.get(4 * 2**i, 16) * channel_multiplier
                 for i in range(size.bit_length() - 3 + 1))  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class StyleGAN2Spec(FamilySpec):
    """A StyleGAN2 generator: ``style_dim`` values of z → ``size``² RGB images; ``channels`` holds the
    channels of each resolution from 4 px up to ``size``."""

    kind: str = "stylegan2"
    size: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    channels: tuple[int, ...] = published_channels(256)
    lr_mlp: float = 0.01

    def __post_init__(self) -> None:
        if self.kind != "stylegan2":
            raise CheckpointError(f"a StyleGAN2 spec of kind {self.kind!r}")
        if type(self.size) is not int or self.size < 4 or self.size & (self.size - 1):
            raise CheckpointError(f"StyleGAN2 size must be a power of two >= 4, got {self.size!r}")
        for name in ("style_dim", "n_mlp"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise CheckpointError(f"invalid StyleGAN2 {name}={value!r} (a positive integer)")
        channels = self.channels
        if not isinstance(channels, list | tuple) or not all(type(c) is int and c > 0 for c in channels):
            raise CheckpointError(f"invalid StyleGAN2 channels={channels!r} (positive integers)")
        object.__setattr__(self, "channels", tuple(channels))  # a list when read back from JSON metadata
        if len(self.channels) != self.levels + 1:
            raise CheckpointError(f"a {self.size} px StyleGAN2 has {self.levels + 1} resolutions, "
                                  f"not {len(self.channels)} channel counts")  # fmt: skip
        if not isinstance(self.lr_mlp, int | float) or not self.lr_mlp > 0:
            raise CheckpointError(f"invalid StyleGAN2 lr_mlp={self.lr_mlp!r} (a positive number)")

    @property
    def levels(self) -> int:
        """The doublings from 4 px to ``size``."""
        return self.size.bit_length() - 3

    @property
    def channel_multiplier(self) -> int | None:
        """The reference's ``channel_multiplier`` for these channels (1 at sizes up to 32 px, where it
        changes nothing); None for channels of no published table."""
        for m in (1, 2, 4):
            if self.channels == published_channels(self.size, m):
                return m
        return None


# ----------------------------------------------------------------------------- layers


def leaky(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The reference's fused bias + leaky ReLU: bias per channel (dimension 1), slope 0.2, times √2."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), LEAK) * GAIN


def blur_kernel(gain: float = 1.0) -> torch.Tensor:
    k = torch.tensor(BLUR)
    k = torch.outer(k, k)
    return k / k.sum() * gain


def upfirdn(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """Upsample by zero insertion, pad every side, filter each channel with ``kernel`` (a FIR filter:
    the flipped kernel correlated)."""
    n, c, h, w = x.shape
    if up > 1:
        spread = x.new_zeros(n, c, h * up, w * up)
        spread[:, :, ::up, ::up] = x
        x = spread
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    k = torch.flip(kernel, (0, 1)).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, k, groups=c)


class EqualLinear(nn.Module):
    """A linear layer whose weight is scaled by lr_mul/√fan_in at run time (and bias by lr_mul)."""

    def __init__(self, in_dim: int, out_dim: int, *, lr_mul: float = 1.0, bias_init: float = 0.0,
                 activate: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return leaky(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], gain: float) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn(x, self.kernel, 1, self.pad)


class ModulatedConv2d(nn.Module):
    """A convolution whose weight is scaled per input channel by the style, per sample (a grouped
    convolution over the batch); demodulated unless ``demodulate=False``; ``upsample``: a stride-2
    transposed convolution then a blur."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, *, demodulate: bool = True,
                 upsample: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = (len(BLUR) - 2) - (kernel_size - 1)
            self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        n, in_ch, h, w = x.shape
        _, out_ch, _, k, _ = self.weight.shape
        s = self.modulation(style).view(n, 1, in_ch, 1, 1)
        weight = self.scale * self.weight * s  # (n, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        x = x.reshape(1, n * in_ch, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * in_ch, out_ch, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=n)
            return self.blur(out.view(n, out_ch, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(n * out_ch, in_ch, k, k), padding=k // 2, groups=n)
        return out.view(n, out_ch, *out.shape[2:])


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class Activate(nn.Module):
    """The biased leaky ReLU after a styled convolution (``activate.bias``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return leaky(x, self.bias)


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, style_dim: int, *, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = Activate(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class Upsample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel(4.0))
        p = len(BLUR) - 2
        self.pad = ((p + 1) // 2 + 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn(x, self.kernel, 2, self.pad)


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, *, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))


class StyleGAN2Generator(nn.Module):
    """z (N, style_dim) → image (N, 3, size, size) in about [-1, 1], with the fixed noise buffers.

    ``mapping`` (z → w) and ``synthesis`` (w → image) are the two halves; ``mean_latent`` the w that
    truncation pulls towards (the checkpoint's ``latent_avg`` when it has one, set by the loader)."""

    def __init__(self, spec: StyleGAN2Spec) -> None:
        super().__init__()
        self.spec = spec
        ch = spec.channels
        self.style = nn.Sequential(PixelNorm(), *(EqualLinear(spec.style_dim, spec.style_dim, lr_mul=spec.lr_mlp,
                                                              activate=True) for _ in range(spec.n_mlp)))  # fmt: skip
        self.input = ConstantInput(ch[0])
        self.conv1 = StyledConv(ch[0], ch[0], spec.style_dim)
        self.to_rgb1 = ToRGB(ch[0], spec.style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty, as in the reference
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(2 * spec.levels + 1):
            side = 4 * 2 ** ((i + 1) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, side, side))
        for level in range(1, spec.levels + 1):
            self.convs.append(StyledConv(ch[level - 1], ch[level], spec.style_dim, upsample=True))
            self.convs.append(StyledConv(ch[level], ch[level], spec.style_dim))
            self.to_rgbs.append(ToRGB(ch[level], spec.style_dim))
        self.mean_latent: torch.Tensor | None = None

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z)

    def average_latent(self, samples: int = MEAN_LATENT_SAMPLES, seed: int = 0) -> torch.Tensor:
        """The mean w (1, style_dim): the checkpoint's, or that of ``samples`` z drawn from ``seed``."""
        if self.mean_latent is not None:
            return self.mean_latent.reshape(1, -1).to(self.input.input)
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(samples, self.spec.style_dim, generator=g).to(self.input.input)
        return self.mapping(z).mean(0, keepdim=True)

    @property
    def latents(self) -> int:
        """How many w a synthesis reads (the reference's ``n_latent``): each to-RGB shares its w with the next
        styled convolution."""
        return 2 * self.spec.levels + 2

    def random_noise(self, batch: int) -> list[torch.Tensor]:
        """Fresh noise for every styled convolution, per sample (the reference's training draws)."""
        return [torch.randn(batch, *getattr(self.noises, f"noise_{i}").shape[1:], device=self.input.input.device)
                for i in range(2 * self.spec.levels + 1)]  # fmt: skip

    def synthesis(self, w: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """w → image.  w is (N, style_dim), the same at every layer, or (N, latents, style_dim), one per
        layer (style mixing); the noise is the fixed buffers unless ``noise`` is given."""
        if noise is None:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(2 * self.spec.levels + 1)]

        def at(i: int) -> torch.Tensor:
            return w[:, i] if w.dim() == 3 else w

        out = self.input.input.expand(w.shape[0], -1, -1, -1)
        out = self.conv1(out, at(0), noise[0])
        skip = self.to_rgb1(out, at(1))
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, at(2 * k + 1), noise[2 * k + 1])
            out = self.convs[2 * k + 1](out, at(2 * k + 2), noise[2 * k + 2])
            skip = to_rgb(out, at(2 * k + 3), skip)
        return skip

    def forward(self, z: torch.Tensor, mix: torch.Tensor | None = None, crossover: int = 0,
                random_noise: bool = False, return_latents: bool = False) -> Any:  # fmt: skip
        """z (N, style_dim) → image: the published call.  Training adds a second latent ``mix`` whose w
        takes over from layer ``crossover`` (style mixing), fresh noise, and the per-layer w returned
        beside the image (``(image, w)``, w of (N, latents, style_dim), for the path-length penalty)."""
        w = self.mapping(z.flatten(1))
        if mix is not None or return_latents:
            w = w.unsqueeze(1).repeat(1, self.latents, 1)
            if mix is not None:
                w2 = self.mapping(mix.flatten(1)).unsqueeze(1).repeat(1, self.latents - crossover, 1)
                w = torch.cat([w[:, :crossover], w2], 1)
        image = self.synthesis(w, self.random_noise(z.shape[0]) if random_noise else None)
        return (image, w) if return_latents else image


# ----------------------------------------------------------------------------- the family


def build(spec: StyleGAN2Spec) -> StyleGAN2Generator:
    return StyleGAN2Generator(spec)


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted(int(m.group(1)) for k in shapes if (m := regex.fullmatch(k)))


def recognise(shapes: Shapes) -> StyleGAN2Spec | None:
    """The StyleGAN2Generator with these keys and shapes; None for keys of another family."""
    if "input.input" not in shapes or "conv1.conv.weight" not in shapes:
        return None
    const = tuple(shapes["input.input"])
    if len(const) != 4 or const[0] != 1 or const[2:] != (4, 4):
        raise CheckpointError(f"the StyleGAN2 constant input input.input is {const}, not (1, C, 4, 4)")
    mlp = _indices(shapes, r"style\.(\d+)\.weight")
    if not mlp or mlp != list(range(1, len(mlp) + 1)):
        raise CheckpointError(f"unrecognised StyleGAN2 mapping network layout (linear layers at style.{mlp})")
    convs = _indices(shapes, r"convs\.(\d+)\.conv\.weight")
    rgbs = _indices(shapes, r"to_rgbs\.(\d+)\.conv\.weight")
    if convs != list(range(len(convs))) or len(convs) != 2 * len(rgbs) or rgbs != list(range(len(rgbs))):
        raise CheckpointError(f"unrecognised StyleGAN2 synthesis layout (convs.{convs}, to_rgbs.{rgbs})")
    channels = [const[1]] + [shapes[f"convs.{2 * k}.conv.weight"][1] for k in range(len(rgbs))]
    return StyleGAN2Spec(size=4 * 2 ** len(rgbs), style_dim=int(shapes["style.1.weight"][1]), n_mlp=len(mlp),
                         channels=tuple(int(c) for c in channels))  # fmt: skip


def official_name(spec: StyleGAN2Spec) -> str:
    multiplier = spec.channel_multiplier
    return f"stylegan2_{spec.size}px" + (f"_cm{multiplier}" if multiplier and spec.size > 32 else "")


def min_tensors(spec: StyleGAN2Spec) -> int:
    """Every tensor it has: the constant, 2 per linear layer, 5 per styled convolution (+ its blur kernel
    when it upsamples), 4 per to-RGB (+ its upsampling kernel), 1 noise buffer per styled convolution."""
    return 1 + 2 * spec.n_mlp + 5 + 4 + spec.levels * (6 + 5 + 5) + 2 * spec.levels + 1


FAMILY = Family(
    name="stylegan2",
    description="StyleGAN2 generator: images from a latent z through a style mapping (no image input)",
    spec_type=StyleGAN2Spec,
    build=build,
    official_name=official_name,
    recognise=recognise,
    published_by="rosinality/stylegan2-pytorch",
    image_input=False,
    conditioning=(
        Conditioning(name="z", kind="latent", size_field="style_dim", help="latent (N, style_dim) drawn from N(0, 1)"),
    ),
    min_tensors=min_tensors,
)
