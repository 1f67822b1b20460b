"""UnetGenerator (unet_128 / unet_256), key for key the official layout.

Blocks nest as ``model.model.1.model.3.model.3...``: the outermost block's Sequential is
``[downconv, submodule, relu, upconv, tanh]``, a middle one ``[lrelu, downconv, norm, submodule,
relu, upconv, norm, (dropout)]``, the innermost ``[lrelu, downconv, relu, upconv, norm]``.

``FAMILY``: the ``unet`` family, whose official ``*_net_G.pth`` files are recognised by these keys.
"""

from __future__ import annotations

import torch
from torch import nn

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Family, Shapes
from cyclestream.engine.models.norm import norm_layer
from cyclestream.engine.models.spec import GeneratorSpec, block_count


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


# ----------------------------------------------------------------------------- the family


def recognise(shapes: Shapes) -> GeneratorSpec | None:
    """The UnetGenerator with these keys and shapes; None for keys of another family."""
    if "model.model.0.weight" not in shapes:
        return None
    first, last = shapes["model.model.0.weight"], shapes.get("model.model.3.weight", ())
    if len(first) != 4 or len(last) != 4:
        raise CheckpointError("no outer 4x4 convolution pair (model.model.0 and .3) of a UnetGenerator")
    ngf, input_nc = int(first[0]), int(first[1])
    output_nc = int(last[1])  # ConvTranspose2d weight: (in, out, k, k)
    levels, prefix = 1, "model.model.1.model."
    while f"{prefix}1.weight" in shapes:
        levels += 1
        prefix += "3.model."
    norm = "batch" if "model.model.1.model.2.weight" in shapes else "instance"
    # Dropout in a U-Net adds no keys; it only matters in training mode.
    return GeneratorSpec("unet", input_nc, output_nc, ngf, levels, norm, False, "reflect")


FAMILY = Family(
    name="unet",
    description="pix2pix U-Net generator (unet_128, unet_256), image to image",
    spec_type=GeneratorSpec,
    build=UnetGenerator,
    official_name=lambda spec: f"unet_{2**spec.n_blocks}",
    recognise=recognise,
    published_by="pytorch-CycleGAN-and-pix2pix",
    size_multiple=lambda spec: 2**spec.n_blocks,  # the innermost level is 1x1
    min_side=lambda spec: 1,  # any side pads up to the multiple
    min_tensors=block_count,
)
