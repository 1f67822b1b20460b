"""StarGANGenerator: one generator for many domains, the target label tiled as extra input planes.

Layer order (state-dict keys ``main.N``, those of yunjey/stargan's ``*-G.ckpt``): a 7×7 convolution from
the image and the label planes (3 + c channels), two stride-2 4×4 convolutions, ``repeat_num`` residual
blocks (``main.N.main.{0,1,3,4}``: conv, norm, relu, conv, norm), two stride-2 4×4 transposed
convolutions, a 7×7 convolution to RGB, Tanh; each convolution without bias, each followed (but the
last) by an affine instance norm and a ReLU; zero padding throughout.

Instance norm uses each image's own statistics at test time as well: the reference never switches
its generator to ``eval()`` (so the running statistics its files carry were never used to make its
results), and the norms here track none; the loader drops those statistics.  A frame's label is a
vector of ``c_dim`` values (one-hot over domains, or 0/1 attributes for the CelebA models).

``FAMILY``: the ``stargan`` family, recognised by the 7×7 first convolution over 3 + c channels and the
``main.N.main.*`` residual blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Conditioning, Family, FamilySpec, Shapes

DOWNSAMPLING = 2  # stride-2 convolutions (and as many transposed ones)


@dataclass(frozen=True, kw_only=True)
class StarGANSpec(FamilySpec):
    """A StarGAN v1 generator: ``c_dim`` label values (domains or attributes), ``ngf`` channels at full
    resolution (the reference's ``g_conv_dim``), ``repeat_num`` residual blocks, RGB in and out."""

    kind: str = "stargan"
    c_dim: int = 5
    ngf: int = 64
    repeat_num: int = 6
    input_nc: int = 3

    def __post_init__(self) -> None:
        if self.kind != "stargan":
            raise CheckpointError(f"a StarGAN spec of kind {self.kind!r}")
        for name, low in (("c_dim", 1), ("ngf", 1), ("repeat_num", 0), ("input_nc", 1)):
            value = getattr(self, name)
            if type(value) is not int or value < low:
                raise CheckpointError(f"invalid StarGAN {name}={value!r} (an integer of at least {low})")


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class StarGANBlock(nn.Module):
    """A residual block: x + (conv3, norm, relu, conv3, norm)(x)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False), _norm(dim), nn.ReLU(True),
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False), _norm(dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


def tile_label(x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The image (N, C, H, W) with the label (N, c) appended as c constant planes."""
    planes = label.to(x.dtype).reshape(label.shape[0], label.shape[1], 1, 1).expand(-1, -1, x.shape[2], x.shape[3])
    return torch.cat([x, planes], 1)


class StarGANGenerator(nn.Module):
    """image (N, 3, H, W) in [-1, 1] and label (N, c_dim) → image (N, 3, H, W) in [-1, 1]."""

    def __init__(self, spec: StarGANSpec) -> None:
        super().__init__()
        self.spec = spec
        ch = spec.ngf
        layers: list[nn.Module] = [
            nn.Conv2d(spec.input_nc + spec.c_dim, ch, 7, 1, 3, bias=False),
            _norm(ch),
            nn.ReLU(True),
        ]
        for _ in range(DOWNSAMPLING):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), _norm(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [StarGANBlock(ch) for _ in range(spec.repeat_num)]
        for _ in range(DOWNSAMPLING):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), _norm(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.Conv2d(ch, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.main(tile_label(x, label))


# ----------------------------------------------------------------------------- the family


def recognise(shapes: Shapes) -> StarGANSpec | None:
    """The StarGANGenerator with these keys and shapes; None for keys of another family (DCGAN's
    ``main.0`` is a 4×4 transposed convolution, its discriminator's has no norm at ``main.1``)."""
    first = shapes.get("main.0.weight", ())
    if len(first) != 4 or tuple(first[2:]) != (7, 7) or "main.1.weight" not in shapes:
        return None
    blocks = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"main\.(\d+)\.main\.", k))})
    start = 3 * (1 + DOWNSAMPLING)
    if blocks != list(range(start, start + len(blocks))):
        raise CheckpointError(f"unrecognised StarGAN generator layout (residual blocks at main.{blocks})")
    ngf, channels = int(first[0]), int(first[1])
    last = start + len(blocks) + 3 * DOWNSAMPLING
    out = shapes.get(f"main.{last}.weight", ())
    if len(out) != 4 or tuple(out[:2]) != (3, ngf):
        raise CheckpointError(f"no 7x7 convolution from {ngf} channels to RGB at main.{last} of a StarGAN generator")
    if channels <= 3:
        raise CheckpointError(f"a StarGAN generator's first convolution takes 3 + c channels, not {channels}")
    return StarGANSpec(c_dim=channels - 3, ngf=ngf, repeat_num=len(blocks))


FAMILY = Family(
    name="stargan",
    description="StarGAN v1 generator: image to any of several domains, chosen by a target label",
    spec_type=StarGANSpec,
    build=StarGANGenerator,
    official_name=lambda spec: f"stargan_{spec.c_dim}domains_{spec.repeat_num}blocks",
    recognise=recognise,
    published_by="yunjey/stargan",
    conditioning=(
        Conditioning(
            name="target",
            kind="label",
            size_field="c_dim",
            help="the target domain: one-hot over the domains, or 0/1 per attribute (CelebA)",
        ),
    ),
    size_multiple=lambda spec: 2**DOWNSAMPLING,
    min_side=lambda spec: 5,  # instance norms need 2x2 pixels after the two stride-2 convolutions
    min_tensors=lambda spec: spec.repeat_num + 2 * DOWNSAMPLING + 2,  # every convolution has weights
    priority=-1,  # before dcgan, whose recogniser also reads main.0 / main.1 keys
)
