"""Generator architectures, one model family per module (engine/models/family.py says what a family
declares; engine/models/registry.py finds them), each in its published key layout."""

from __future__ import annotations

from torch import nn

from cyclestream.engine.models.family import Conditioning, Family, FamilySpec
from cyclestream.engine.models.mobile import MobileResnetBlock, MobileResnetGenerator
from cyclestream.engine.models.registry import families, family_named
from cyclestream.engine.models.resnet import ResnetGenerator
from cyclestream.engine.models.spec import GeneratorSpec
from cyclestream.engine.models.unet import UnetGenerator

Generator = ResnetGenerator | UnetGenerator | MobileResnetGenerator  # the image-to-image generators of GeneratorSpec


def build_generator(spec: FamilySpec) -> nn.Module:
    """A freshly initialised generator of the given architecture, built by its family."""
    return spec.family.build(spec)


__all__ = ["Conditioning", "Family", "FamilySpec", "Generator", "GeneratorSpec", "MobileResnetBlock",
           "MobileResnetGenerator", "ResnetGenerator", "UnetGenerator", "build_generator", "families",
           "family_named"]
