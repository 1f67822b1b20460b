"""AnimeGANv2 generator, key for key the PyTorch port's ``model.py`` (bryandlee/animegan2-pytorch): the
published ``face_paint_512_v1.pt``, ``face_paint_512_v2.pt``, ``celeba_distill.pt`` and ``paprika.pt``
are plain state dicts of it.

Layer list (attribute names are the state-dict keys).  A *conv unit* is a ``Sequential`` of a
reflection pad (index 0), a bias-free convolution (``1``), ``GroupNorm(1, C)`` with affine weights
(``2``) and LeakyReLU 0.2 (``3``); its pad is half the kernel, or right and bottom by one for the
stride-2 units.  With ``w`` = 32 in the published files:

- ``block_a``: 7×7 unit 3 → w; 3×3 stride-2 unit w → 2w; 3×3 unit 2w → 2w;
- ``block_b``: 3×3 stride-2 unit 2w → 4w; 3×3 unit 4w → 4w;
- ``block_c``: 3×3 unit 4w → 4w; ``n_blocks`` (4) inverted residual blocks, the first 4w → 8w and the
  others 8w → 8w with the input added back; a 3×3 unit 8w → 4w.  A block is ``layers``: a 1×1 unit to
  twice its input channels (``layers.0``), a depthwise 3×3 unit with a convolution bias (``layers.1``),
  a bias-free 1×1 convolution (``layers.2``) and ``GroupNorm(1, C)`` (``layers.3``), no activation;
- bilinear ×2 upsampling, ``block_d``: two 3×3 units 4w → 4w;
- bilinear ×2 upsampling, ``block_e``: 3×3 unit 4w → 2w; 3×3 unit 2w → 2w; 7×7 unit 2w → w;
- ``out_layer``: a bias-free 1×1 convolution w → 3 (``out_layer.0``), then Tanh.

Input and output are RGB on (-1, 1): the reference's ``test.py`` feeds ``to_tensor(image) * 2 - 1`` and
saves ``clip(-1, 1) * 0.5 + 0.5``.  Its upsampling is ``scale_factor=2, align_corners=False`` unless
``--upsample_align`` is given; with it (and in a bare ``model(x)`` call, as the hub's ``face2paint``
makes) each upsampling goes to the exact size of the matching encoder activation with
``align_corners=True``.  ``upsample_align`` in the spec chooses between them; a published file, which
cannot say, gets test.py's default; ``--upsample align|scale`` chooses for a run.  Frames are padded to a
multiple of 4 for the ×2 way (so it gives an output of the frame's own size) and run as they are for the
aligned way, whose upsampling meets the encoder's sizes at any size: both as test.py computes them.  Its
``--x32`` (sides rounded down to a multiple of 32, 256 at least, before the model) is ``--size`` with those
sides.

``FAMILY``: the ``animegan2`` family, recognised by these keys and shapes.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass

import torch
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Family, FamilySpec, Shapes

PUBLISHED_WIDTH = 32
PUBLISHED_BLOCKS = 4
_BLOCK = re.compile(r"block_c\.(\d+)\.layers\.")


@dataclass(frozen=True, kw_only=True)
class AnimeGAN2Spec(FamilySpec):
    """An AnimeGANv2 generator: ``width`` channels after its first convolution (32 in the published files;
    2×, 4× and 8× deeper in), ``n_blocks`` inverted residual blocks (4), ``input_nc`` image channels (3),
    ``upsample_align``: the decoder's upsampling (False: ×2 without aligned corners, as test.py runs it)."""

    kind: str = "animegan2"
    input_nc: int = 3
    width: int = PUBLISHED_WIDTH
    n_blocks: int = PUBLISHED_BLOCKS
    upsample_align: bool = False

    def __post_init__(self) -> None:
        if self.kind != "animegan2":
            raise CheckpointError(f"an AnimeGANv2 spec of kind {self.kind!r}")
        for name, least in (("input_nc", 1), ("width", 1), ("n_blocks", 1)):
            value = getattr(self, name)
            if type(value) is not int or value < least:
                raise CheckpointError(f"invalid AnimeGANv2 {name}={value!r} (an integer >= {least})")
        if type(self.upsample_align) is not bool:
            raise CheckpointError(f"invalid AnimeGANv2 upsample_align={self.upsample_align!r} (true or false)")

    @property
    def ngf(self) -> int:
        """The widest full-resolution activation (the memory estimate's): the 4w channels ``block_e``
        takes after the last upsampling."""
        return 4 * self.width


class ConvUnit(nn.Sequential):
    """Reflection pad, convolution, GroupNorm(1, cout), LeakyReLU 0.2; ``stride`` 2 pads right and bottom
    by one instead of all round."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, bias: bool = False):
        pad = (0, 1, 0, 1) if stride == 2 else kernel // 2
        super().__init__(
            nn.ReflectionPad2d(pad),
            nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=bias),
            nn.GroupNorm(1, cout),
            nn.LeakyReLU(0.2),
        )


class InvertedBlock(nn.Module):
    """1×1 expansion to 2·cin, depthwise 3×3, 1×1 projection to cout with a norm; the input is added back
    when cin == cout."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        hidden = 2 * cin
        self.residual = cin == cout
        self.layers = nn.Sequential(
            ConvUnit(cin, hidden, kernel=1),
            ConvUnit(hidden, hidden, groups=hidden, bias=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.GroupNorm(1, cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class AnimeGAN2Generator(nn.Module):
    """The AnimeGANv2 generator of ``spec``: RGB on (-1, 1) (N, 3, H, W) in, the same out."""

    def __init__(self, spec: AnimeGAN2Spec | None = None) -> None:
        super().__init__()
        spec = spec or AnimeGAN2Spec()
        self.spec = spec
        w = spec.width
        self.block_a = nn.Sequential(
            ConvUnit(spec.input_nc, w, 7), ConvUnit(w, 2 * w, stride=2), ConvUnit(2 * w, 2 * w)
        )
        self.block_b = nn.Sequential(ConvUnit(2 * w, 4 * w, stride=2), ConvUnit(4 * w, 4 * w))
        blocks = [InvertedBlock(4 * w if i == 0 else 8 * w, 8 * w) for i in range(spec.n_blocks)]
        self.block_c = nn.Sequential(ConvUnit(4 * w, 4 * w), *blocks, ConvUnit(8 * w, 4 * w))
        self.block_d = nn.Sequential(ConvUnit(4 * w, 4 * w), ConvUnit(4 * w, 4 * w))
        self.block_e = nn.Sequential(ConvUnit(4 * w, 2 * w), ConvUnit(2 * w, 2 * w), ConvUnit(2 * w, w, 7))
        self.out_layer = nn.Sequential(nn.Conv2d(w, 3, 1, bias=False), nn.Tanh())

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.spec.upsample_align:
            return nn.functional.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)
        return nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.block_a(x)
        y = self.block_c(self.block_b(half))
        y = self.block_d(self._up(y, half))
        return self.out_layer(self.block_e(self._up(y, x)))


# ----------------------------------------------------------------------------- the family


def recognise(shapes: Shapes) -> AnimeGAN2Spec | None:
    """The AnimeGANv2 generator with these keys and shapes; None for keys of another family."""
    if "block_a.0.1.weight" not in shapes or "out_layer.0.weight" not in shapes:
        return None
    first, out = shapes["block_a.0.1.weight"], shapes["out_layer.0.weight"]
    if len(first) != 4 or tuple(first[2:]) != (7, 7):
        raise CheckpointError(f"the first convolution of an AnimeGANv2 generator is 7x7 (block_a.0.1 is {first})")
    width = int(first[0])
    if tuple(out) != (3, width, 1, 1):
        raise CheckpointError(f"no 1x1 convolution from {width} channels to RGB at out_layer.0 of an AnimeGANv2 model")
    blocks = sorted({int(m.group(1)) for k in shapes if (m := _BLOCK.match(k))})
    if not blocks or blocks != list(range(1, len(blocks) + 1)):
        raise CheckpointError(f"AnimeGANv2 inverted residual blocks are not block_c.1..N (found block_c.{blocks})")
    return AnimeGAN2Spec(input_nc=int(first[1]), width=width, n_blocks=len(blocks))


def with_upsampling(generator: nn.Module, spec: AnimeGAN2Spec, align: bool) -> tuple[nn.Module, AnimeGAN2Spec]:
    """The generator and spec with the decoder's upsampling ``align``-ed or not (a copy; the caller's stays)."""
    if spec.upsample_align == align:
        return generator, spec
    spec = dataclasses.replace(spec, upsample_align=align)
    out = copy.deepcopy(generator)
    out.spec = spec
    return out, spec


def upsampling_text(spec: AnimeGAN2Spec) -> str:
    """How the decoder upsamples, for the run's first lines and ``info``."""
    if spec.upsample_align:
        return "upsampling to the encoder's sizes with aligned corners (test.py --upsample_align True, face2paint)"
    return "upsampling ×2 without aligned corners (test.py's default; --upsample align: its --upsample_align True)"


def official_name(spec: AnimeGAN2Spec) -> str:
    published = spec.width == PUBLISHED_WIDTH and spec.n_blocks == PUBLISHED_BLOCKS
    name = "animegan2" if published else f"animegan2_w{spec.width}_{spec.n_blocks}blocks"
    return name + ("_aligned" if spec.upsample_align else "")


FAMILY = Family(
    name="animegan2",
    description="AnimeGANv2 generator (PyTorch port), photo to anime-style image on (-1, 1)",
    spec_type=AnimeGAN2Spec,
    build=AnimeGAN2Generator,
    official_name=official_name,
    recognise=recognise,
    published_by="bryandlee/animegan2-pytorch",
    # ×2 upsampling meets the encoder's sizes on multiples of 4; aligned upsampling goes to them at any size,
    # so frames run unpadded, as test.py runs them
    size_multiple=lambda spec: 1 if spec.upsample_align else 4,
    min_side=lambda spec: 8 if spec.upsample_align else 5,  # the quarter-size activation of 2x2 reflects its padding
    min_tensors=lambda spec: spec.n_blocks,
)
