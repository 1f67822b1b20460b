"""Discriminators plus the official weight initialisation.

Generators are the engine's classes, one model family each (cyclestream.engine.models: the CycleGAN
and pix2pix ResNet and U-Net, DCGAN's in engine/models/dcgan.py); this module holds what only
training needs.  ``NLayerDiscriminator`` follows the official layer order,
so its state dict has the official ``model.N.*`` keys (an official ``*_net_D.pth`` loads into it).
"""

from __future__ import annotations

import torch
from torch import nn

from cyclestream.engine.models.dcgan import dcgan_levels
from cyclestream.engine.models.norm import norm_layer


class NLayerDiscriminator(nn.Module):
    """The PatchGAN discriminator; ``n_layers=3`` is the official 70×70 PatchGAN ("basic")."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        use_bias = norm == "instance"  # the official rule: convs followed by BatchNorm have no bias
        kw, padw = 4, 1
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kw, stride=2, padding=padw, bias=use_bias),
                norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=padw, bias=use_bias),
            norm_layer(norm, ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DCGANDiscriminator(nn.Module):
    """The DCGAN discriminator; returns logits (N,) (the loss applies the sigmoid)."""

    def __init__(self, ndf: int = 64, image_size: int = 64, input_nc: int = 3) -> None:
        super().__init__()
        levels = dcgan_levels(image_size)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for _ in range(levels - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


def init_weights(net: nn.Module, gain: float = 0.02, init_type: str = "normal") -> nn.Module:
    """The official ``init_type=normal`` (conv/linear weights N(0, gain)) or ``xavier`` (Xavier-normal with
    ``gain``, CUT's default); biases 0; BatchNorm weights N(1, gain), biases 0.  Draws from torch's global
    generator (seed it first)."""
    if init_type not in ("normal", "xavier"):
        raise ValueError(f"init_type {init_type!r}: expected normal or xavier")

    def init(m: nn.Module) -> None:
        name = type(m).__name__
        weight = getattr(m, "weight", None)
        if weight is None:
            return
        if "Conv" in name or "Linear" in name:
            if init_type == "xavier":
                nn.init.xavier_normal_(weight, gain=gain)
            else:
                nn.init.normal_(weight, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0.0)
        elif "BatchNorm2d" in name:
            nn.init.normal_(weight, 1.0, gain)
            nn.init.constant_(m.bias, 0.0)

    return net.apply(init)


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)
