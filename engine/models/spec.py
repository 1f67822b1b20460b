"""GeneratorSpec: everything needed to rebuild a generator, and nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from cyclestream.engine.errors import CheckpointError

GeneratorKind = Literal["resnet", "unet"]
NormKind = Literal["instance", "batch"]
PaddingKind = Literal["reflect", "replicate", "zero"]


@dataclass(frozen=True)
class GeneratorSpec:
    """Architecture of an official-layout generator (ResnetGenerator or UnetGenerator).

    ``n_blocks`` counts residual blocks (ResNet) or down-sampling levels (U-Net: 7 for unet_128,
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
        if self.kind not in ("resnet", "unet"):
            raise CheckpointError(f"unknown generator kind {self.kind!r} (expected resnet or unet)")
        if self.norm not in ("instance", "batch"):
            raise CheckpointError(f"unknown norm {self.norm!r} (expected instance or batch)")
        if self.padding_type not in ("reflect", "replicate", "zero"):
            raise CheckpointError(f"unknown padding {self.padding_type!r}")
        if self.ngf < 1 or self.n_blocks < (5 if self.kind == "unet" else 0):
            raise CheckpointError(f"invalid generator size ngf={self.ngf} n_blocks={self.n_blocks}")

    @property
    def size_multiple(self) -> int:
        """Frame sides must be a multiple of this; frames are padded to it and cropped back."""
        return 4 if self.kind == "resnet" else 2**self.n_blocks

    @property
    def official_name(self) -> str:
        """The official ``--netG`` name when there is one (resnet_9blocks, unet_256, ...)."""
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
