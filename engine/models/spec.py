"""GeneratorSpec: everything needed to rebuild a generator of the ResNet, U-Net and mobile families."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import FamilySpec

GeneratorKind = Literal["resnet", "unet", "mobile"]
NormKind = Literal["instance", "batch"]
PaddingKind = Literal["reflect", "replicate", "zero"]


@dataclass(frozen=True)
class GeneratorSpec(FamilySpec):
    """Architecture of an official-layout generator (ResnetGenerator or UnetGenerator), or of the
    ``mobile`` student (MobileResnetGenerator: a ResNet with depthwise-separable residual blocks).
    ``kind`` names the family (engine/models/resnet.py, unet.py, mobile.py), which decides its size
    multiple, smallest side and name.

    ``n_blocks`` counts residual blocks (ResNet, mobile) or down-sampling levels (U-Net: 7 for unet_128,
    8 for unet_256), as the official ``n_blocks`` / ``num_downs`` do.
    """

    kind: GeneratorKind = "resnet"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    norm: NormKind = "instance"
    use_dropout: bool = False
    padding_type: PaddingKind = "reflect"

    def __post_init__(self) -> None:
        if self.kind not in ("resnet", "unet", "mobile"):
            raise CheckpointError(f"unknown generator kind {self.kind!r} (expected resnet, unet or mobile)")
        if self.norm not in ("instance", "batch"):
            raise CheckpointError(f"unknown norm {self.norm!r} (expected instance or batch)")
        if self.padding_type not in ("reflect", "replicate", "zero"):
            raise CheckpointError(f"unknown padding {self.padding_type!r}")
        if self.ngf < 1 or self.n_blocks < (5 if self.kind == "unet" else 0):
            raise CheckpointError(f"invalid generator size ngf={self.ngf} n_blocks={self.n_blocks}")


def block_count(spec: GeneratorSpec) -> int:
    """The fewest tensors its file holds: every residual block (every U-Net level) has weights."""
    return spec.n_blocks
