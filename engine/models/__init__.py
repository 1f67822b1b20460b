"""Generator architectures in the official key layout, built from a GeneratorSpec."""

from __future__ import annotations

from torch import nn

from cyclestream.engine.models.mobile import MobileResnetBlock, MobileResnetGenerator
from cyclestream.engine.models.resnet import ResnetGenerator
from cyclestream.engine.models.spec import GeneratorSpec
from cyclestream.engine.models.unet import UnetGenerator

Generator = ResnetGenerator | UnetGenerator | MobileResnetGenerator


def build_generator(spec: GeneratorSpec) -> nn.Module:
    """A freshly initialised generator of the given architecture."""
    if spec.kind == "mobile":
        return MobileResnetGenerator(spec)
    return ResnetGenerator(spec) if spec.kind == "resnet" else UnetGenerator(spec)


__all__ = ["Generator", "GeneratorSpec", "MobileResnetBlock", "MobileResnetGenerator", "ResnetGenerator",
           "UnetGenerator", "build_generator"]
