"""UnetGenerator (unet_128 / unet_256), key for key the official layout.

Blocks nest as ``model.model.1.model.3.model.3...``: the outermost block's Sequential is
``[downconv, submodule, relu, upconv, tanh]``, a middle one ``[lrelu, downconv, norm, submodule,
relu, upconv, norm, (dropout)]``, the innermost ``[lrelu, downconv, relu, upconv, norm]``.
"""

from __future__ import annotations

import torch
from torch import nn

from cyclestream.engine.models.norm import norm_layer
from cyclestream.engine.models.spec import GeneratorSpec


class UnetSkipConnectionBlock(nn.Module):
    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        norm: str,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        use_bias = norm == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=use_bias)
        if outermost:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, norm_layer(norm, outer_nc)]
        else:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                norm_layer(norm, inner_nc),
                submodule,
                nn.ReLU(True),
                upconv,
                norm_layer(norm, outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.spec = spec
        ngf, norm = spec.ngf, spec.norm
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm, innermost=True)
        for _ in range(spec.n_blocks - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm, submodule=block, use_dropout=spec.use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, norm, submodule=block)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, norm, submodule=block)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, norm, submodule=block)
        self.model = UnetSkipConnectionBlock(
            spec.output_nc, ngf, norm, input_nc=spec.input_nc, submodule=block, outermost=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
