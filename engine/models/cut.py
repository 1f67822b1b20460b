"""The CUT / FastCUT generator (Park et al. 2020), key for key the published contrastive-unpaired-translation
layout: a ResnetGenerator whose stride-2 convolutions are replaced by anti-aliased resampling.

Layer order (indices are state-dict keys, ``model.N``): pad7, conv7, norm, relu; two down levels, each
``conv3 (stride 1), norm, relu, Downsample`` (anti-aliased; ``no_antialias``: ``conv3 stride 2, norm,
relu`` as in CycleGAN); ``n_blocks`` ResnetBlocks; two up levels, each ``Upsample, conv3, norm, relu``
(``no_antialias_up``: ``ConvTranspose, norm, relu``); pad7, conv7, tanh.

``Downsample`` blurs with the normalised outer product of [1, 2, 1] after reflection padding and keeps
every second pixel; ``Upsample`` is a stride-2 transposed depthwise convolution with the outer product of
[1, 3, 3, 1] (normalised, times 4) after replication padding, trimmed to twice the input side.  Both keep
that filter as a buffer named ``filt`` (one copy per channel), so it is in every published file: the
``filt`` keys are what tells a CUT file from a CycleGAN one.  A file with neither anti-aliased level is the
CycleGAN ResnetGenerator layer for layer and loads as the ``resnet`` family (the same network).

``FAMILY``: the ``cut`` family.  ``features`` returns the activations PatchNCE reads (trainer/cut.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Family, FamilySpec, Shapes
from cyclestream.engine.models.norm import norm_layer
from cyclestream.engine.models.resnet import ResnetBlock, conv_indices
from cyclestream.engine.models.spec import NormKind, PaddingKind

N_DOWNSAMPLING = 2


@dataclass(frozen=True)
class CutSpec(FamilySpec):
    """Architecture of a CUT/FastCUT generator: the ResNet sizes plus which levels are anti-aliased
    (``antialias``: the down levels, the reference's ``not no_antialias``; ``antialias_up``: the up levels)."""

    kind: str = "cut"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    norm: NormKind = "instance"
    use_dropout: bool = False
    padding_type: PaddingKind = "reflect"
    antialias: bool = True
    antialias_up: bool = True

    def __post_init__(self) -> None:
        if self.kind != "cut":
            raise CheckpointError(f"a CUT spec of kind {self.kind!r}")
        if self.norm not in ("instance", "batch"):
            raise CheckpointError(f"unknown norm {self.norm!r} (expected instance or batch)")
        if self.padding_type not in ("reflect", "replicate", "zero"):
            raise CheckpointError(f"unknown padding {self.padding_type!r}")
        if min(self.input_nc, self.output_nc, self.ngf) < 1 or self.n_blocks < 0:
            raise CheckpointError(f"invalid generator size ngf={self.ngf} n_blocks={self.n_blocks}")

    @property
    def variant(self) -> str:
        """Which levels are anti-aliased, in the reference's flags."""
        if self.antialias and self.antialias_up:
            return "anti-aliased"
        if self.antialias:
            return "anti-aliased down, --no_antialias_up"
        if self.antialias_up:
            return "--no_antialias, anti-aliased up"
        return "--no_antialias --no_antialias_up"


def binomial(taps: int) -> torch.Tensor:
    """The normalised 2-D binomial filter of ``taps`` x ``taps`` (outer product of a row of Pascal's triangle)."""
    row = torch.tensor([float(math.comb(taps - 1, k)) for k in range(taps)])
    filt = row[:, None] * row[None, :]
    return filt / filt.sum()


class Downsample(nn.Module):
    """Blur then subsample by 2: reflection pad 1, a depthwise 3x3 binomial filter, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.register_buffer("filt", binomial(3)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class Upsample(nn.Module):
    """Upsample by 2 with a fixed filter: replication pad 1, a depthwise stride-2 transposed convolution
    with the 4x4 binomial filter times 4, trimmed to exactly twice the input side."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad = nn.ReplicationPad2d(1)
        self.register_buffer("filt", (binomial(4) * 4)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(self.pad(x), self.filt, stride=2, padding=2, groups=x.shape[1])
        return y[:, :, 1:-1, 1:-1]


class CutGenerator(nn.Module):
    def __init__(self, spec: CutSpec) -> None:
        super().__init__()
        self.spec = spec
        ngf, norm = spec.ngf, spec.norm
        use_bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(spec.input_nc, ngf, 7, padding=0, bias=use_bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(N_DOWNSAMPLING):
            c_in, c_out = ngf * 2**i, ngf * 2 ** (i + 1)
            stride = 1 if spec.antialias else 2
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=use_bias),
                norm_layer(norm, c_out),
                nn.ReLU(True),
            ]
            if spec.antialias:
                layers.append(Downsample(c_out))
        width = ngf * 2**N_DOWNSAMPLING
        layers += [
            ResnetBlock(width, spec.padding_type, norm, spec.use_dropout, use_bias) for _ in range(spec.n_blocks)
        ]
        for i in range(N_DOWNSAMPLING):
            c_in = ngf * 2 ** (N_DOWNSAMPLING - i)
            c_out = c_in // 2
            if spec.antialias_up:
                layers += [Upsample(c_in), nn.Conv2d(c_in, c_out, 3, padding=1, bias=use_bias)]
            else:
                layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=use_bias))
            layers += [norm_layer(norm, c_out), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, spec.output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of layers ``model.N`` for each N of ``layers`` (ascending), running only as far as
        the last of them (the reference's ``encode_only``)."""
        wanted, out = set(layers), []
        last = max(layers)
        for index, layer in enumerate(self.model):
            x = layer(x)
            if index in wanted:
                out.append(x)
            if index == last:
                break
        return out


# ----------------------------------------------------------------------------- the family

_FILT = re.compile(r"model\.(\d+)\.filt$")
_BLOCK_LAYOUTS = {
    (1, 5): ("reflect", False),
    (1, 6): ("reflect", True),
    (0, 3): ("zero", False),
    (0, 4): ("zero", True),
}


def _expected(spec: CutSpec) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in CutGenerator(spec).state_dict().items()}


def recognise(shapes: Shapes) -> CutSpec | None:
    """The CUT generator with exactly these keys and shapes; None for a file without ``filt`` buffers."""
    filters = sorted(int(m.group(1)) for k in shapes if (m := _FILT.match(k)))
    if not filters:
        return None
    what = f"a CUT/FastCUT generator (anti-aliasing filters at model.{', model.'.join(map(str, filters))})"
    first = shapes.get("model.1.weight")
    if first is None or len(first) != 4 or tuple(first[2:]) != (7, 7):
        raise CheckpointError(f"looks like {what}, but its first layer is not a 7x7 convolution")
    ngf, input_nc = int(first[0]), int(first[1])
    blocks = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    if not blocks or blocks != list(range(blocks[0], blocks[0] + len(blocks))):
        raise CheckpointError(f"looks like {what}, but has no contiguous residual blocks (model.N.conv_block.*)")
    convs = tuple(conv_indices(shapes, f"model.{blocks[0]}.conv_block."))
    if convs not in _BLOCK_LAYOUTS:
        raise CheckpointError(f"looks like {what}, but its residual blocks have convolutions at {list(convs)}")
    padding, dropout = _BLOCK_LAYOUTS[convs]
    start, n_blocks = blocks[0], len(blocks)
    antialias = start == 12 and "model.7.filt" in shapes and "model.11.filt" in shapes
    antialias_up = f"model.{start + n_blocks}.filt" in shapes
    last = conv_indices(shapes, "model.")[-1]
    spec = CutSpec(
        input_nc=input_nc,
        output_nc=int(shapes[f"model.{last}.weight"][0]),
        ngf=ngf,
        n_blocks=n_blocks,
        norm="batch" if "model.2.weight" in shapes else "instance",
        use_dropout=dropout,
        padding_type=padding,
        antialias=antialias,
        antialias_up=antialias_up,
    )
    if not (antialias or antialias_up):
        raise CheckpointError(f"looks like {what}, but neither its down nor its up levels are where CUT has them")
    expected = _expected(spec)
    given = {k: tuple(v) for k, v in shapes.items() if not k.endswith("num_batches_tracked")}
    wanted = {k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}
    if given != wanted:
        odd = sorted(set(given) ^ set(wanted)) or sorted(k for k in given if given[k] != wanted[k])
        raise CheckpointError(
            f"looks like {what} ({spec.variant}, ngf {ngf}, {n_blocks} blocks), but its keys or shapes differ "
            f"at {odd[:3]}"
        )
    return spec


def size_multiple(spec: CutSpec) -> int:
    """Each down level halves the sides; the up levels double them back."""
    return 2**N_DOWNSAMPLING


def min_side(spec: CutSpec) -> int:
    """As the ResNet: after two halvings the blocks' reflection pads and instance norms need 2x2 pixels."""
    return 5


def official_name(spec: CutSpec) -> str:
    aliasing = "" if spec.antialias and spec.antialias_up else f", {spec.variant}"
    return f"resnet_{spec.n_blocks}blocks (CUT{aliasing})"


def min_tensors(spec: CutSpec) -> int:
    """Every residual block has weights; every anti-aliased level has its filter."""
    return spec.n_blocks + 2 * spec.antialias + 2 * spec.antialias_up


FAMILY = Family(
    name="cut",
    description="CUT / FastCUT ResNet generator with anti-aliased down- and upsampling, image to image",
    spec_type=CutSpec,
    build=CutGenerator,
    official_name=official_name,
    recognise=recognise,
    published_by="contrastive-unpaired-translation (CUT, FastCUT)",
    size_multiple=size_multiple,
    min_side=min_side,
    min_tensors=min_tensors,
)
