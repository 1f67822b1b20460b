"""DCGANGenerator: images from noise, PyTorch's dcgan example generator for any power-of-two size.

Layer order (state-dict keys ``main.N``, those of the example's ``netG_epoch_N.pth``): a 4×4
transposed convolution from z (N, nz, 1, 1) to 4×4, BatchNorm, ReLU; then per doubling a stride-2
transposed convolution halving the channels, BatchNorm, ReLU; a last transposed convolution to the
image channels and Tanh.  A 64 px generator has transposed convolutions at ``main.0, 3, 6, 9, 12``.

``FAMILY``: the ``dcgan`` family.  It has no image input (its one input is the latent z), so it is
described by ``info`` and refused by every job that translates frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Conditioning, Family, FamilySpec, Shapes


def dcgan_levels(image_size: int) -> int:
    """The stride-2 stages between 4×4 and ``image_size`` (64 → 4); a ValueError for a size that is not a
    power of two of at least 16."""
    if type(image_size) is not int or image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"DCGAN image size must be a power of two >= 16, got {image_size}")
    return image_size.bit_length() - 3


@dataclass(frozen=True, kw_only=True)
class DCGANSpec(FamilySpec):
    """A DCGAN generator: ``nz`` noise values → ``image_size``² images of ``output_nc`` channels; ``ngf`` is
    the channels of its last hidden layer (doubled at each coarser one)."""

    kind: str = "dcgan"
    nz: int = 100
    ngf: int = 64
    image_size: int = 64
    output_nc: int = 3

    def __post_init__(self) -> None:
        if self.kind != "dcgan":
            raise CheckpointError(f"a DCGAN spec of kind {self.kind!r}")
        for name in ("nz", "ngf", "output_nc"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise CheckpointError(f"invalid DCGAN {name}={value!r} (a positive integer)")
        try:
            dcgan_levels(self.image_size)
        except ValueError as e:
            raise CheckpointError(str(e)) from None


class DCGANGenerator(nn.Module):
    """The DCGAN generator (PyTorch's dcgan example), for any power-of-two size: noise (N, nz, 1, 1)
    → 4×4 → ... → image (N, 3, size, size) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, image_size: int = 64, output_nc: int = 3) -> None:
        super().__init__()
        levels = dcgan_levels(image_size)
        ch = ngf * 2 ** (levels - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(levels - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, output_nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.spec = DCGANSpec(nz=nz, ngf=ngf, image_size=image_size, output_nc=output_nc)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


# ----------------------------------------------------------------------------- the family


def build(spec: DCGANSpec) -> DCGANGenerator:
    return DCGANGenerator(spec.nz, spec.ngf, spec.image_size, spec.output_nc)


def recognise(shapes: Shapes) -> DCGANSpec | None:
    """The DCGANGenerator with these keys and shapes; None for keys of another family (the example's
    discriminator, ``main.0`` then a LeakyReLU, has no ``main.1`` BatchNorm)."""
    if "main.0.weight" not in shapes or "main.1.weight" not in shapes:
        return None
    pattern = re.compile(r"main\.(\d+)\.weight$")
    convs = sorted(int(m.group(1)) for k, v in shapes.items() if (m := pattern.match(k)) and len(v) == 4)
    if len(convs) < 3 or convs != list(range(0, 3 * len(convs), 3)):
        raise CheckpointError(f"unrecognised DCGAN generator layout (transposed convolutions at main.{convs})")
    first, last = shapes["main.0.weight"], shapes[f"main.{convs[-1]}.weight"]
    if tuple(first[2:]) != (4, 4) or tuple(last[2:]) != (4, 4):
        raise CheckpointError("the transposed convolutions of a DCGAN generator are 4x4")
    # ConvTranspose2d weights are (in, out, k, k): z's size in, the last hidden channels and the image out.
    return DCGANSpec(nz=int(first[0]), ngf=int(last[0]), image_size=4 * 2 ** (len(convs) - 1), output_nc=int(last[1]))


FAMILY = Family(
    name="dcgan",
    description="DCGAN generator: images from a latent noise vector (no image input)",
    spec_type=DCGANSpec,
    build=build,
    official_name=lambda spec: f"dcgan_{spec.image_size}px",
    recognise=recognise,
    published_by="pytorch/examples dcgan",
    image_input=False,
    conditioning=(
        Conditioning(name="z", kind="latent", size_field="nz", help="noise (N, nz, 1, 1) drawn from N(0, 1)"),
    ),
    min_tensors=lambda spec: dcgan_levels(spec.image_size) + 1,  # one transposed convolution per stage
)
