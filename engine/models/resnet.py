"""ResnetGenerator, key for key the official pytorch-CycleGAN-and-pix2pix layout.

Layer order (indices are state-dict keys, ``model.N``): pad7, conv7, norm, relu, two stride-2 convs
(each + norm + relu), ``n_blocks`` ResnetBlocks, two transposed convs (each + norm + relu), pad7,
conv7, tanh.  A block is ``conv_block = [pad, conv, norm, relu, (dropout), pad, conv, norm]``;
zero padding drops the pad layers (``padding=1`` in the conv instead).
"""

from __future__ import annotations

import torch
from torch import nn

from cyclestream.engine.models.norm import norm_layer
from cyclestream.engine.models.spec import GeneratorSpec


def _pad(padding_type: str) -> tuple[list[nn.Module], int]:
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    return [], 1


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool, use_bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        pad, p = _pad(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), norm_layer(norm, dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = _pad(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    n_downsampling = 2
    block: type[ResnetBlock] = ResnetBlock  # the residual block (MobileResnetGenerator: a separable one)

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.spec = spec
        ngf, norm = spec.ngf, spec.norm
        use_bias = norm == "instance"  # the official rule: convs before BatchNorm have no bias
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(spec.input_nc, ngf, 7, padding=0, bias=use_bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(self.n_downsampling):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                norm_layer(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**self.n_downsampling
        for _ in range(spec.n_blocks):
            layers.append(self.block(ngf * mult, spec.padding_type, norm, spec.use_dropout, use_bias))
        for i in range(self.n_downsampling):
            mult = 2 ** (self.n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, spec.output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
