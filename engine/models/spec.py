"""GeneratorSpec: everything needed to rebuild a generator, and nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from cyclestream.engine.errors import CheckpointError

GeneratorKind = Literal["resnet", "unet", "mobile"]
NormKind = Literal["instance", "batch"]
PaddingKind = Literal["reflect", "replicate", "zero"]


@dataclass(frozen=True)
class GeneratorSpec:
    """Architecture of an official-layout generator (ResnetGenerator or UnetGenerator), or of the
    ``mobile`` student (MobileResnetGenerator: a ResNet with depthwise-separable residual blocks).

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

    @property
    def size_multiple(self) -> int:
        """Frame sides must be a multiple of this; frames are padded to it and cropped back."""
        return 2**self.n_blocks if self.kind == "unet" else 4

    @property
    def min_side(self) -> int:
        """The smallest frame side it runs on: a ResNet's (and the mobile ResNet's) instance norms need at
        least 2x2 pixels after its two stride-2 convolutions (5 pixels pad to 8, 4 stay 4 and shrink to 1x1)."""
        return 1 if self.kind == "unet" else 5

    @property
    def official_name(self) -> str:
        """The official ``--netG`` name when there is one (resnet_9blocks, unet_256, ...); the mobile
        student is ``mobile_resnet_Nblocks`` (GAN Compression's name)."""
        if self.kind == "mobile":
            return f"mobile_resnet_{self.n_blocks}blocks"
        if self.kind == "resnet":
            return f"resnet_{self.n_blocks}blocks"
        return f"unet_{2**self.n_blocks}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CheckpointError(f"unknown generator fields in model metadata: {sorted(unknown)}")
        return cls(**data)
