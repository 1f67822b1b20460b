"""Test-side reconstructions of two conditioned generators, in their reference layer order:

- yunjey/stargan ``model.py`` ``Generator(conv_dim, c_dim, repeat_num)`` (its norms affine and tracking
  running statistics, as there, so a state dict made from it carries them as the ``*-G.ckpt`` files do);
- junyanz/BicycleGAN ``models/networks.py`` ``G_Unet_add_input`` / ``G_Unet_add_all`` with the
  default options (instance norm without affine parameters, ``upsample="basic"``, ReLU up, zero padding).

Written from the layer lists so that the engine's generators are checked key for key and output for
output against them.  Not imported by the package.
"""

from __future__ import annotations

import torch
from torch import nn


def _star_norm(ch: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(ch, affine=True, track_running_stats=True)


class StarResidual(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False), _star_norm(dim), nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False), _star_norm(dim),
        )  # fmt: skip

    def forward(self, x):
        return x + self.main(x)


class StarGenerator(nn.Module):
    def __init__(self, conv_dim: int = 64, c_dim: int = 5, repeat_num: int = 6) -> None:
        super().__init__()
        seq: list[nn.Module] = [
            nn.Conv2d(3 + c_dim, conv_dim, kernel_size=7, stride=1, padding=3, bias=False),
            _star_norm(conv_dim),
            nn.ReLU(inplace=True),
        ]
        d = conv_dim
        for _ in range(2):
            seq += [
                nn.Conv2d(d, 2 * d, kernel_size=4, stride=2, padding=1, bias=False),
                _star_norm(2 * d),
                nn.ReLU(inplace=True),
            ]
            d *= 2
        seq += [StarResidual(d) for _ in range(repeat_num)]
        for _ in range(2):
            seq += [
                nn.ConvTranspose2d(d, d // 2, kernel_size=4, stride=2, padding=1, bias=False),
                _star_norm(d // 2),
                nn.ReLU(inplace=True),
            ]
            d //= 2
        seq += [nn.Conv2d(d, 3, kernel_size=7, stride=1, padding=3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*seq)

    def forward(self, x, c):
        c = c.view(c.size(0), c.size(1), 1, 1).repeat(1, 1, x.size(2), x.size(3))
        return self.main(torch.cat([x, c], dim=1))


class BicycleBlock(nn.Module):
    """``UnetBlock`` (z at the input only): ``model`` = down + [submodule] + up; output cat([model(x), x])."""

    def __init__(self, input_nc, outer_nc, inner_nc, submodule=None, outermost=False, innermost=False):
        super().__init__()
        self.outermost = outermost
        downconv = [nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1)]
        if outermost:
            seq = [*downconv, submodule, nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), nn.Tanh()]
        elif innermost:
            seq = [
                nn.LeakyReLU(0.2, True),
                *downconv,
                nn.ReLU(True),
                nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1),
                nn.InstanceNorm2d(outer_nc),
            ]
        else:
            seq = [
                nn.LeakyReLU(0.2, True),
                *downconv,
                nn.InstanceNorm2d(inner_nc),
                submodule,
                nn.ReLU(True),
                nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1),
                nn.InstanceNorm2d(outer_nc),
            ]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([self.model(x), x], 1)


class BicycleAddInput(nn.Module):
    def __init__(self, input_nc, output_nc, nz, num_downs, ngf=64):
        super().__init__()
        self.nz = nz
        block = BicycleBlock(ngf * 8, ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = BicycleBlock(ngf * 8, ngf * 8, ngf * 8, block)
        block = BicycleBlock(ngf * 4, ngf * 4, ngf * 8, block)
        block = BicycleBlock(ngf * 2, ngf * 2, ngf * 4, block)
        block = BicycleBlock(ngf, ngf, ngf * 2, block)
        self.model = BicycleBlock(input_nc + nz, output_nc, ngf, block, outermost=True)

    def forward(self, x, z):
        z_img = z.view(z.size(0), z.size(1), 1, 1).expand(z.size(0), z.size(1), x.size(2), x.size(3))
        return self.model(torch.cat([x, z_img], 1))


class BicycleBlockZ(nn.Module):
    """``UnetBlock_with_z``: ``down`` over cat([x, z planes]), ``submodule(·, z)``, ``up``."""

    def __init__(self, input_nc, outer_nc, inner_nc, nz, submodule=None, outermost=False, innermost=False):
        super().__init__()
        self.outermost, self.innermost, self.nz = outermost, innermost, nz
        conv = nn.Conv2d(input_nc + nz, inner_nc, kernel_size=4, stride=2, padding=1)
        if outermost:
            down, up = [conv], [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), nn.Tanh()]
        elif innermost:
            down = [nn.LeakyReLU(0.2, True), conv]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1), nn.InstanceNorm2d(outer_nc)]
        else:
            down = [nn.LeakyReLU(0.2, True), conv, nn.InstanceNorm2d(inner_nc)]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), nn.InstanceNorm2d(outer_nc)]
        self.down = nn.Sequential(*down)
        self.submodule = submodule
        self.up = nn.Sequential(*up)

    def forward(self, x, z):
        z_img = z.view(z.size(0), z.size(1), 1, 1).expand(z.size(0), z.size(1), x.size(2), x.size(3))
        x_and_z = torch.cat([x, z_img], 1)
        if self.outermost:
            return self.up(self.submodule(self.down(x_and_z), z))
        if self.innermost:
            return torch.cat([self.up(self.down(x_and_z)), x], 1)
        return torch.cat([self.up(self.submodule(self.down(x_and_z), z)), x], 1)


class BicycleAddAll(nn.Module):
    def __init__(self, input_nc, output_nc, nz, num_downs, ngf=64):
        super().__init__()
        block = BicycleBlockZ(ngf * 8, ngf * 8, ngf * 8, nz, None, innermost=True)
        block = BicycleBlockZ(ngf * 8, ngf * 8, ngf * 8, nz, block)
        for _ in range(num_downs - 6):
            block = BicycleBlockZ(ngf * 8, ngf * 8, ngf * 8, nz, block)
        block = BicycleBlockZ(ngf * 4, ngf * 4, ngf * 8, nz, block)
        block = BicycleBlockZ(ngf * 2, ngf * 2, ngf * 4, nz, block)
        block = BicycleBlockZ(ngf, ngf, ngf * 2, nz, block)
        self.model = BicycleBlockZ(input_nc, output_nc, ngf, nz, block, outermost=True)

    def forward(self, x, z):
        return self.model(x, z)


def randomised(net: nn.Module, seed: int) -> nn.Module:
    """``net`` with every weight drawn from N(0, 0.2) (biases and norm scales too), and running statistics
    that would change the output if anything used them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            base = 1.0 if name.endswith("weight") and p.ndim == 1 else 0.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
        for m in net.modules():
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return net
