"""BicycleGAN's encoder and multi-scale discriminator, in junyanz/BicycleGAN's layer lists and key layouts
(``latest_net_E.pth``: ``E_ResNet``; ``latest_net_D.pth``: ``D_NLayersMulti``), and the generator's dropout.

The encoder: a 4×4 stride-2 convolution, then residual blocks that each halve the side (instance norm,
LeakyReLU(0.2), 3×3 convolution, instance norm, LeakyReLU, 3×3 convolution and 2×2 average pool; beside
a 2×2 average pool and 1×1 convolution), a LeakyReLU and an 8×8 average pool to one position, then two
linear heads: μ (``fc``) and log σ² (``fcVar``).  Its widths are ``nef × min(4, level)``.

The discriminator: ``num_d`` PatchGANs (``model_0``, ``model_1``, ...), the i-th of width
``round(ndf / 2**i)`` on the image average-pooled i times (3×3, stride 2, padding not counted); every
convolution has a bias, instance norm after the inner ones.  It returns one prediction map per scale.
"""

from __future__ import annotations

import torch
from torch import nn

POOL_SIDE = 8  # the encoder's last average pool: it ends at 8×8


def encoder_blocks(crop_size: int) -> int:
    """Blocks (first convolution included) that bring ``crop_size`` to the 8×8 of the last pool: 5 for 256
    (the reference's ``resnet_256``), 4 for 128."""
    return crop_size.bit_length() - POOL_SIDE.bit_length()


class _ResidualDown(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.InstanceNorm2d(cin),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(cin, cin, 3, 1, 1),
            nn.InstanceNorm2d(cin),
            nn.LeakyReLU(0.2, True),
            nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.AvgPool2d(2, 2)),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class ResNetEncoder(nn.Module):
    """image (N, input_nc, S, S), S = 8 · 2**(blocks − 1) → (μ, log σ²), each (N, nz)."""

    def __init__(self, input_nc: int, nz: int, nef: int, blocks: int) -> None:
        super().__init__()
        if blocks < 2:
            raise ValueError(f"a BicycleGAN encoder needs at least 2 blocks, got {blocks}")
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, 4, 2, 1)]
        width = nef
        for level in range(1, blocks):
            width = nef * min(4, level + 1)
            layers.append(_ResidualDown(nef * min(4, level), width))
        layers += [nn.LeakyReLU(0.2, True), nn.AvgPool2d(POOL_SIDE)]
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(width, nz))
        self.fcVar = nn.Sequential(nn.Linear(width, nz))  # the published key

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = self.conv(x).flatten(1)
        return self.fc(flat), self.fcVar(flat)


def _patchgan(input_nc: int, ndf: int, n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < n_layers else 1
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1),
            nn.InstanceNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
        ]
    layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    return nn.Sequential(*layers)


class MultiScaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs of ``n_layers`` on successively halved images; a list of their predictions."""

    def __init__(self, input_nc: int, ndf: int, n_layers: int = 3, num_d: int = 2) -> None:
        super().__init__()
        self.num_d = num_d
        if num_d == 1:
            self.model = _patchgan(input_nc, ndf, n_layers)
            return
        for i in range(num_d):
            self.add_module(f"model_{i}", _patchgan(input_nc, round(ndf / 2**i), n_layers))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.num_d == 1:
            return [self.model(x)]
        out = []
        for i in range(self.num_d):
            if i:
                x = self.down(x)
            out.append(getattr(self, f"model_{i}")(x))
        return out


def add_dropout(generator: nn.Module, n_blocks: int) -> nn.Module:
    """The reference's ``--use_dropout`` on a BicycleGAN generator (engine/models/bicyclegan.py): Dropout(0.5)
    at the end of each ``ngf × 8`` level but the innermost (levels 4 to ``n_blocks`` − 2).  The layers hold
    no weights, so the state dict keeps its keys; the engine's inference generator has none (eval mode)."""
    level, index = generator.model, 0
    while level is not None:
        if 4 <= index <= n_blocks - 2:
            (level.up if hasattr(level, "up") else level.model).append(nn.Dropout(0.5))
        inner = getattr(level, "submodule", None)
        if inner is None and hasattr(level, "model"):  # the ``input`` layout: the inner level sits in ``model``
            inner = next((m for m in level.model if type(m) is type(level)), None)
        level, index = inner, index + 1
    return generator
