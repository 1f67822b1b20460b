"""MobileResnetGenerator: the ResNet generator with depthwise-separable residual blocks.

The student architecture of GAN Compression (Li et al., CVPR 2020): the same stem, down- and
up-sampling and output layers as :class:`ResnetGenerator` (state-dict keys ``model.N`` at the same
indices), but every residual block's two 3×3 convolutions are separable — a depthwise 3×3, an
instance norm, a pointwise 1×1 — which cuts a block's multiply-adds by about ``9·C / (C + 9)``.

A block is ``conv_block = [pad, sep, norm, relu, (dropout), pad, sep, norm]`` with
``sep = [depthwise 3×3, norm, pointwise 1×1]``.  :class:`MobileResnetBlock` is a
:class:`ResnetBlock` (``x + conv_block(x)``), so the fused instance-norm kernels
(cyclestream.engine.models.fuse) replace its norm+ReLU pairs, its inner norms and its norm+residual tail
exactly as they do a ResNet's, and ONNX export sees only standard convolutions.

``FAMILY``: the ``mobile`` family.  Its files are the project's own (``cyclestream distill``), their
spec in the metadata, so it recognises no published layout.
"""

from __future__ import annotations

from torch import nn

from cyclestream.engine.models.family import Family
from cyclestream.engine.models.norm import norm_layer
from cyclestream.engine.models.resnet import ResnetBlock, ResnetGenerator, _pad, min_side, size_multiple
from cyclestream.engine.models.spec import GeneratorSpec, block_count


def separable_conv(dim: int, padding: int, norm: str, use_bias: bool) -> nn.Sequential:
    """Depthwise 3×3 (one filter per channel), norm, pointwise 1×1 (mixes the channels)."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, 3, padding=padding, groups=dim, bias=use_bias),
        norm_layer(norm, dim),
        nn.Conv2d(dim, dim, 1, bias=use_bias),
    )


class MobileResnetBlock(ResnetBlock):
    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool, use_bias: bool) -> None:
        nn.Module.__init__(self)
        layers: list[nn.Module] = []
        pad, p = _pad(padding_type)
        layers += [*pad, separable_conv(dim, p, norm, use_bias), norm_layer(norm, dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = _pad(padding_type)
        layers += [*pad, separable_conv(dim, p, norm, use_bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)


class MobileResnetGenerator(ResnetGenerator):
    """A ResnetGenerator whose residual blocks are :class:`MobileResnetBlock`."""

    block = MobileResnetBlock


FAMILY = Family(
    name="mobile",
    description="the ResNet generator with depthwise-separable blocks (GAN Compression's student), image to image",
    spec_type=GeneratorSpec,
    build=MobileResnetGenerator,
    official_name=lambda spec: f"mobile_resnet_{spec.n_blocks}blocks",  # GAN Compression's name
    size_multiple=size_multiple,
    min_side=min_side,
    min_tensors=block_count,
)
