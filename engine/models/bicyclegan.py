"""BicycleGAN's U-Net generators: an image and a latent code z (``nz`` values) → an image.

Two published layouts (junyanz/BicycleGAN ``latest_net_G.pth``), told apart by their keys:

- ``where_add="all"`` (the reference's default): z tiled as ``nz`` planes and appended to the input of
  every level's down-convolution.  Keys ``model.down.0`` (outermost), ``model.submodule.down.1``, ...,
  ``model.submodule....up.1``; each down-convolution takes ``nz`` more channels than the level above gives.
- ``where_add="input"``: z appended to the image only; keys ``model.model.0``, ``model.model.1.model.1``,
  ... as the pix2pix U-Net's, its first convolution over ``input_nc + nz`` channels.

Each level is a 4×4 stride-2 convolution down and a 4×4 stride-2 transposed convolution up (all with
bias), LeakyReLU(0.2) before the inner down-convolutions, ReLU before every up one, instance norm
without affine parameters, Tanh at the end; a level's output is ``cat([up(...), x])`` (its own result
first, then what came in).  Zero padding inside the convolutions.

``FAMILY``: the ``bicyclegan`` family.  A ``model.model.*`` U-Net is taken as BicycleGAN's only when its
first convolution takes 1 + 8 or 3 + 8 channels (an edge or RGB image and the published nz = 8); any
other such U-Net is pix2pix's (engine/models/unet.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Conditioning, Family, FamilySpec, Shapes

WhereAdd = Literal["input", "all"]
PUBLISHED_NZ = 8  # the reference's --nz, what an ``input`` layout's first convolution is split by
IMAGE_CHANNELS = (1, 3)


@dataclass(frozen=True, kw_only=True)
class BicycleGANSpec(FamilySpec):
    """A BicycleGAN U-Net generator: ``n_blocks`` levels (7: unet_128, 8: unet_256), ``ngf`` channels at
    the outermost level, z of ``nz`` values added at the input or at every level (``where_add``)."""

    kind: str = "bicyclegan"
    input_nc: int = 3
    output_nc: int = 3
    nz: int = 8
    ngf: int = 64
    n_blocks: int = 8
    where_add: WhereAdd = "all"

    def __post_init__(self) -> None:
        if self.kind != "bicyclegan":
            raise CheckpointError(f"a BicycleGAN spec of kind {self.kind!r}")
        if self.where_add not in ("input", "all"):
            raise CheckpointError(f"unknown BicycleGAN where_add {self.where_add!r} (input or all)")
        for name in ("input_nc", "output_nc", "nz", "ngf"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise CheckpointError(f"invalid BicycleGAN {name}={value!r} (a positive integer)")
        low = 6 if self.where_add == "all" else 5
        if type(self.n_blocks) is not int or not low <= self.n_blocks <= 14:
            raise CheckpointError(f"invalid BicycleGAN n_blocks={self.n_blocks!r} ({low} to 14 levels)")


def tile_z(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The input (N, C, H, W) with z (N, nz) appended as nz constant planes."""
    planes = z.to(x.dtype).reshape(z.shape[0], z.shape[1], 1, 1).expand(-1, -1, x.shape[2], x.shape[3])
    return torch.cat([x, planes], 1)


def _widths(spec: BicycleGANSpec) -> list[tuple[int, int]]:
    """(outer, inner) channels of each level, outermost first."""
    ngf = spec.ngf
    widths = [(spec.output_nc, ngf), (ngf, ngf * 2), (ngf * 2, ngf * 4), (ngf * 4, ngf * 8)]
    return widths + [(ngf * 8, ngf * 8)] * (spec.n_blocks - 4)


class _Level(nn.Module):
    """One level of the ``input`` layout (``model`` holds its layers, the inner level among them)."""

    def __init__(self, in_nc: int, outer: int, inner: int, sub: nn.Module | None, outermost: bool) -> None:
        super().__init__()
        self.outermost = outermost
        down = nn.Conv2d(in_nc, inner, 4, 2, 1)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif sub is None:  # innermost
            layers = [
                nn.LeakyReLU(0.2, True),
                down,
                nn.ReLU(True),
                nn.ConvTranspose2d(inner, outer, 4, 2, 1),
                nn.InstanceNorm2d(outer),
            ]
        else:
            layers = [
                nn.LeakyReLU(0.2, True),
                down,
                nn.InstanceNorm2d(inner),
                sub,
                nn.ReLU(True),
                nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1),
                nn.InstanceNorm2d(outer),
            ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat([y, x], 1)


class _LevelWithZ(nn.Module):
    """One level of the ``all`` layout: ``down`` over the input and z's planes, ``submodule``, ``up``."""

    def __init__(self, in_nc: int, outer: int, inner: int, nz: int, sub: _LevelWithZ | None, outermost: bool) -> None:
        super().__init__()
        self.outermost = outermost
        down = nn.Conv2d(in_nc + nz, inner, 4, 2, 1)
        if outermost:
            self.down = nn.Sequential(down)
            self.up = nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh())
        elif sub is None:
            self.down = nn.Sequential(nn.LeakyReLU(0.2, True), down)
            self.up = nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1), nn.InstanceNorm2d(outer))
        else:
            self.down = nn.Sequential(nn.LeakyReLU(0.2, True), down, nn.InstanceNorm2d(inner))
            self.up = nn.Sequential(
                nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.InstanceNorm2d(outer)
            )
        self.submodule = sub

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = self.down(tile_z(x, z))
        if self.submodule is not None:
            y = self.submodule(y, z)
        y = self.up(y)
        return y if self.outermost else torch.cat([y, x], 1)


class BicycleGANGenerator(nn.Module):
    """image (N, input_nc, H, W) in [-1, 1] and z (N, nz) → image (N, output_nc, H, W) in [-1, 1]; H and W
    multiples of 2**n_blocks."""

    def __init__(self, spec: BicycleGANSpec) -> None:
        super().__init__()
        self.spec = spec
        widths = _widths(spec)
        level: nn.Module | None = None
        for i in range(spec.n_blocks - 1, -1, -1):
            outer, inner = widths[i]
            in_nc = spec.input_nc if i == 0 else outer
            if spec.where_add == "all":
                level = _LevelWithZ(in_nc, outer, inner, spec.nz, level, i == 0)  # type: ignore[arg-type]
            else:
                level = _Level(in_nc + (spec.nz if i == 0 else 0), outer, inner, level, i == 0)
        assert level is not None
        self.model = level

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.spec.where_add == "all":
            return self.model(x, z)
        return self.model(tile_z(x, z))


# ----------------------------------------------------------------------------- the family


def _norms_or_upsampling(shapes: Shapes, keys: tuple[str, ...]) -> None:
    if any(k in shapes for k in keys):
        raise CheckpointError(
            "a BicycleGAN generator with batch norm or bilinear upsampling (only the published "
            "instance norm and transposed convolutions are supported)"
        )


def _recognise_all(shapes: Shapes) -> BicycleGANSpec:
    first, up = shapes["model.down.0.weight"], shapes.get("model.up.1.weight", ())
    if len(first) != 4 or len(up) != 4 or tuple(first[2:]) != (4, 4):
        raise CheckpointError("no outer 4x4 convolution pair (model.down.0, model.up.1) of a BicycleGAN generator")
    levels, prefix = 1, "model.submodule."
    while f"{prefix}down.1.weight" in shapes:
        levels += 1
        prefix += "submodule."
    _norms_or_upsampling(shapes, ("model.submodule.down.2.weight", "model.up.3.weight"))
    second = shapes.get("model.submodule.down.1.weight", ())
    ngf = int(first[0])
    if len(second) != 4 or int(second[1]) <= ngf:
        raise CheckpointError("the second level of a BicycleGAN generator takes no z planes (model.submodule.down.1)")
    nz = int(second[1]) - ngf
    if int(first[1]) <= nz:
        raise CheckpointError(f"the first convolution of a BicycleGAN generator takes {first[1]} channels for nz={nz}")
    return BicycleGANSpec(
        input_nc=int(first[1]) - nz, output_nc=int(up[1]), nz=nz, ngf=ngf, n_blocks=levels, where_add="all"
    )


def _recognise_input(shapes: Shapes) -> BicycleGANSpec | None:
    first = shapes["model.model.0.weight"]
    if len(first) != 4 or int(first[1]) - PUBLISHED_NZ not in IMAGE_CHANNELS:
        return None  # a pix2pix U-Net (or damaged: engine/models/unet.py says so)
    if "model.model.1.model.2.weight" in shapes:  # a batch-norm U-Net: pix2pix's
        return None
    up = shapes.get("model.model.3.weight", ())
    if len(up) != 4:
        raise CheckpointError("no outer transposed convolution (model.model.3) of a BicycleGAN generator")
    levels, prefix = 1, "model.model.1.model."
    while f"{prefix}1.weight" in shapes:
        levels += 1
        prefix += "3.model."
    return BicycleGANSpec(
        input_nc=int(first[1]) - PUBLISHED_NZ,
        output_nc=int(up[1]),
        nz=PUBLISHED_NZ,
        ngf=int(first[0]),
        n_blocks=levels,
        where_add="input",
    )


def recognise(shapes: Shapes) -> BicycleGANSpec | None:
    """The BicycleGANGenerator with these keys and shapes; None for keys of another family."""
    if "model.down.0.weight" in shapes:
        return _recognise_all(shapes)
    if "model.model.0.weight" in shapes:
        return _recognise_input(shapes)
    return None


FAMILY = Family(
    name="bicyclegan",
    description="BicycleGAN U-Net generator: image to image, one of many outputs chosen by a latent z",
    spec_type=BicycleGANSpec,
    build=BicycleGANGenerator,
    official_name=lambda spec: f"bicyclegan_unet_{2**spec.n_blocks}_add_{spec.where_add}",
    recognise=recognise,
    published_by="junyanz/BicycleGAN",
    conditioning=(
        Conditioning(name="z", kind="latent", size_field="nz", help="latent code (N, nz) drawn from N(0, 1)"),
    ),
    size_multiple=lambda spec: 2**spec.n_blocks,  # the innermost level is 1x1
    min_side=lambda spec: 1,
    min_tensors=lambda spec: spec.n_blocks,
    priority=-1,  # before unet, whose model.model.* layout the ``input`` variant shares
)
