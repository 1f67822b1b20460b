"""ResnetGenerator, key for key the official pytorch-CycleGAN-and-pix2pix layout.

Layer order (indices are state-dict keys, ``model.N``): pad7, conv7, norm, relu, two stride-2 convs
(each + norm + relu), ``n_blocks`` ResnetBlocks, two transposed convs (each + norm + relu), pad7,
conv7, tanh.  A block is ``conv_block = [pad, conv, norm, relu, (dropout), pad, conv, norm]``;
zero padding drops the pad layers (``padding=1`` in the conv instead).

``FAMILY``: the ``resnet`` family, whose official ``*_net_G.pth`` files are recognised by these keys.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Family, Shapes
from cyclestream.engine.models.norm import norm_layer
from cyclestream.engine.models.spec import GeneratorSpec, block_count


def _pad(padding_type: str) -> tuple[list[nn.Module], int]:
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    return [], 1


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool, use_bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        pad, p = _pad(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), norm_layer(norm, dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = _pad(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    n_downsampling = 2
    block: type[ResnetBlock] = ResnetBlock  # the residual block (MobileResnetGenerator: a separable one)

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.spec = spec
        ngf, norm = spec.ngf, spec.norm
        use_bias = norm == "instance"  # the official rule: convs before BatchNorm have no bias
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(spec.input_nc, ngf, 7, padding=0, bias=use_bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(self.n_downsampling):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                norm_layer(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**self.n_downsampling
        for _ in range(spec.n_blocks):
            layers.append(self.block(ngf * mult, spec.padding_type, norm, spec.use_dropout, use_bias))
        for i in range(self.n_downsampling):
            mult = 2 ** (self.n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, spec.output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# ----------------------------------------------------------------------------- the family


def conv_indices(shapes: Shapes, prefix: str) -> list[int]:
    """The sorted N of every 4-D ``{prefix}N.weight`` (a convolution's weight)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    return sorted(int(m.group(1)) for k, v in shapes.items() if (m := pattern.match(k)) and len(v) == 4)


def recognise(shapes: Shapes) -> GeneratorSpec | None:
    """The ResnetGenerator with exactly these keys and shapes; None for keys of another family."""
    if "model.1.weight" not in shapes or not any(".conv_block." in k for k in shapes):
        return None
    if any(k.endswith(".filt") for k in shapes):  # anti-aliasing filters: a CUT generator (engine/models/cut.py)
        return None
    first = shapes["model.1.weight"]
    if len(first) != 4 or tuple(first[2:]) != (7, 7):
        raise CheckpointError("first layer is not the 7x7 convolution of a ResnetGenerator")
    ngf, input_nc = int(first[0]), int(first[1])
    blocks = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    if not blocks or blocks != list(range(blocks[0], blocks[0] + len(blocks))):
        raise CheckpointError("no contiguous residual blocks found (model.N.conv_block.*)")
    convs = conv_indices(shapes, f"model.{blocks[0]}.conv_block.")
    layouts = {(1, 5): ("reflect", False), (1, 6): ("reflect", True), (0, 3): ("zero", False), (0, 4): ("zero", True)}
    if tuple(convs) not in layouts:
        raise CheckpointError(f"unrecognised residual block layout (convolutions at {convs})")
    padding, dropout = layouts[tuple(convs)]
    last = conv_indices(shapes, "model.")[-1]
    output_nc = int(shapes[f"model.{last}.weight"][0])
    norm = "batch" if "model.2.weight" in shapes else "instance"
    return GeneratorSpec("resnet", input_nc, output_nc, ngf, len(blocks), norm, dropout, padding)


def size_multiple(spec: GeneratorSpec) -> int:
    """Each stride-2 convolution halves the sides; the transposed ones double them back."""
    return 2**ResnetGenerator.n_downsampling


def min_side(spec: GeneratorSpec) -> int:
    """A ResNet's instance norms need at least 2x2 pixels after its two stride-2 convolutions (5 pixels
    pad to 8, 4 stay 4 and shrink to 1x1)."""
    return 5


FAMILY = Family(
    name="resnet",
    description="CycleGAN/pix2pix ResNet generator (resnet_Nblocks), image to image",
    spec_type=GeneratorSpec,
    build=ResnetGenerator,
    official_name=lambda spec: f"resnet_{spec.n_blocks}blocks",
    recognise=recognise,
    published_by="pytorch-CycleGAN-and-pix2pix",
    size_multiple=size_multiple,
    min_side=min_side,
    min_tensors=block_count,
)
