"""An independent re-implementation of the official pytorch-CycleGAN-and-pix2pix training steps.

``CycleGANModel.optimize_parameters`` and ``Pix2PixModel.optimize_parameters``
(junyanz/pytorch-CycleGAN-and-pix2pix: models/cycle_gan_model.py, models/pix2pix_model.py,
models/networks.py ``GANLoss``, util/image_pool.py ``ImagePool``), written out again method for
method, so the trainer's steps can be checked against them.  Nothing here imports the trainer: the
losses, the image pool, ``set_requires_grad`` and the optimisers are this module's own; the caller
hands in the networks (the project's generator and discriminator classes, holding copies of the
trainer's initial weights).

One departure, needed to compare runs draw for draw: the official ``ImagePool`` draws from Python's
global ``random`` (``random.uniform(0, 1)``, then ``random.randint(0, pool_size - 1)``); here each
pool draws from the object it is given, anything with those two methods (a ``random.Random`` by
default, seeded).
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Protocol

import torch
from torch import nn


class Draws(Protocol):
    """The two calls the official pool makes on Python's ``random``."""

    def uniform(self, a: float, b: float) -> float: ...

    def randint(self, a: int, b: int) -> int: ...


class GANLoss(nn.Module):
    """networks.GANLoss: the target label tensor expanded to the prediction's shape; ``lsgan`` is
    MSELoss, ``vanilla`` BCEWithLogitsLoss."""

    def __init__(self, gan_mode: str, target_real_label: float = 1.0, target_fake_label: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("real_label", torch.tensor(target_real_label))
        self.register_buffer("fake_label", torch.tensor(target_fake_label))
        self.gan_mode = gan_mode
        if gan_mode == "lsgan":
            self.loss: nn.Module = nn.MSELoss()
        elif gan_mode == "vanilla":
            self.loss = nn.BCEWithLogitsLoss()
        else:
            raise NotImplementedError(f"gan mode {gan_mode} not implemented")

    def get_target_tensor(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        target = self.real_label if target_is_real else self.fake_label
        return target.expand_as(prediction)  # type: ignore[operator]

    def __call__(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:  # type: ignore[override]
        return self.loss(prediction, self.get_target_tensor(prediction, target_is_real))


class ImagePool:
    """util/image_pool.ImagePool: while not full, store and return each image; once full, with
    probability 1/2 return a stored image at random (storing the new one in its place), else the new one."""

    def __init__(self, pool_size: int, draws: Draws | None = None) -> None:
        self.pool_size = pool_size
        self.random: Draws = draws if draws is not None else random.Random(0)
        self.swaps = 0  # (not official) how often a stored image was returned: lets a test see the pool at work
        if self.pool_size > 0:
            self.num_imgs = 0
            self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images
        return_images = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if self.num_imgs < self.pool_size:
                self.num_imgs = self.num_imgs + 1
                self.images.append(image)
                return_images.append(image)
            else:
                p = self.random.uniform(0, 1)
                if p > 0.5:
                    random_id = self.random.randint(0, self.pool_size - 1)  # randint is inclusive
                    tmp = self.images[random_id].clone()
                    self.images[random_id] = image
                    return_images.append(tmp)
                    self.swaps += 1
                else:
                    return_images.append(image)
        return torch.cat(return_images, 0)


def set_requires_grad(nets: nn.Module | list[nn.Module], requires_grad: bool = False) -> None:
    """base_model.BaseModel.set_requires_grad."""
    if not isinstance(nets, list):
        nets = [nets]
    for net in nets:
        if net is not None:
            for param in net.parameters():
                param.requires_grad = requires_grad


class CycleGANModel:
    """models/cycle_gan_model.CycleGANModel, training part (``netG_A``: A→B, ``netD_A`` judges B)."""

    def __init__(self, netG_A: nn.Module, netG_B: nn.Module, netD_A: nn.Module, netD_B: nn.Module, *,
                 lr: float = 2e-4, beta1: float = 0.5, gan_mode: str = "lsgan", lambda_A: float = 10.0,
                 lambda_B: float = 10.0, lambda_identity: float = 0.5, pool_size: int = 50,
                 pool_draws: tuple[Draws, Draws] | None = None) -> None:
        self.netG_A, self.netG_B, self.netD_A, self.netD_B = netG_A, netG_B, netD_A, netD_B
        self.opt = {"lambda_A": lambda_A, "lambda_B": lambda_B, "lambda_identity": lambda_identity}
        draws_a, draws_b = pool_draws if pool_draws is not None else (None, None)
        self.fake_A_pool = ImagePool(pool_size, draws_a)
        self.fake_B_pool = ImagePool(pool_size, draws_b)
        self.criterionGAN = GANLoss(gan_mode)
        self.criterionCycle = nn.L1Loss()
        self.criterionIdt = nn.L1Loss()
        self.optimizer_G = torch.optim.Adam(itertools.chain(self.netG_A.parameters(), self.netG_B.parameters()),
                                            lr=lr, betas=(beta1, 0.999))
        self.optimizer_D = torch.optim.Adam(itertools.chain(self.netD_A.parameters(), self.netD_B.parameters()),
                                            lr=lr, betas=(beta1, 0.999))

    def set_input(self, input: dict[str, torch.Tensor]) -> None:
        self.real_A = input["A"]
        self.real_B = input["B"]

    def forward(self) -> None:
        self.fake_B = self.netG_A(self.real_A)
        self.rec_A = self.netG_B(self.fake_B)
        self.fake_A = self.netG_B(self.real_B)
        self.rec_B = self.netG_A(self.fake_A)

    def backward_D_basic(self, netD: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        pred_real = netD(real)
        loss_D_real = self.criterionGAN(pred_real, True)
        pred_fake = netD(fake.detach())
        loss_D_fake = self.criterionGAN(pred_fake, False)
        loss_D = (loss_D_real + loss_D_fake) * 0.5
        loss_D.backward()
        return loss_D

    def backward_D_A(self) -> None:
        fake_B = self.fake_B_pool.query(self.fake_B)
        self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, fake_B)

    def backward_D_B(self) -> None:
        fake_A = self.fake_A_pool.query(self.fake_A)
        self.loss_D_B = self.backward_D_basic(self.netD_B, self.real_A, fake_A)

    def backward_G(self) -> None:
        lambda_idt = self.opt["lambda_identity"]
        lambda_A = self.opt["lambda_A"]
        lambda_B = self.opt["lambda_B"]
        if lambda_idt > 0:
            self.idt_A = self.netG_A(self.real_B)
            self.loss_idt_A: Any = self.criterionIdt(self.idt_A, self.real_B) * lambda_B * lambda_idt
            self.idt_B = self.netG_B(self.real_A)
            self.loss_idt_B: Any = self.criterionIdt(self.idt_B, self.real_A) * lambda_A * lambda_idt
        else:
            self.loss_idt_A = 0
            self.loss_idt_B = 0
        self.loss_G_A = self.criterionGAN(self.netD_A(self.fake_B), True)
        self.loss_G_B = self.criterionGAN(self.netD_B(self.fake_A), True)
        self.loss_cycle_A = self.criterionCycle(self.rec_A, self.real_A) * lambda_A
        self.loss_cycle_B = self.criterionCycle(self.rec_B, self.real_B) * lambda_B
        self.loss_G = (self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B + self.loss_idt_A
                       + self.loss_idt_B)
        self.loss_G.backward()

    def optimize_parameters(self) -> None:
        self.forward()
        set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.optimizer_G.step()
        set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad()
        self.backward_D_A()
        self.backward_D_B()
        self.optimizer_D.step()

    def get_current_losses(self) -> dict[str, float]:
        names = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")
        return {n: float(torch.as_tensor(getattr(self, "loss_" + n)).detach()) for n in names}


class Pix2PixModel:
    """models/pix2pix_model.Pix2PixModel, training part: D on (A, B) pairs concatenated along
    channels, updated first; then G on the GAN loss through the frozen D plus λ_L1·L1."""

    def __init__(self, netG: nn.Module, netD: nn.Module, *, lr: float = 2e-4, beta1: float = 0.5,
                 gan_mode: str = "vanilla", lambda_L1: float = 100.0, pool_size: int = 0,
                 pool_draws: Draws | None = None) -> None:
        self.netG, self.netD = netG, netD
        self.lambda_L1 = lambda_L1
        self.fake_AB_pool = ImagePool(pool_size, pool_draws)
        self.criterionGAN = GANLoss(gan_mode)
        self.criterionL1 = nn.L1Loss()
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=lr, betas=(beta1, 0.999))

    def set_input(self, input: dict[str, torch.Tensor]) -> None:
        self.real_A = input["A"]
        self.real_B = input["B"]

    def forward(self) -> None:
        self.fake_B = self.netG(self.real_A)

    def backward_D(self) -> None:
        fake_AB = self.fake_AB_pool.query(torch.cat((self.real_A, self.fake_B), 1))
        pred_fake = self.netD(fake_AB.detach())
        self.loss_D_fake = self.criterionGAN(pred_fake, False)
        real_AB = torch.cat((self.real_A, self.real_B), 1)
        pred_real = self.netD(real_AB)
        self.loss_D_real = self.criterionGAN(pred_real, True)
        self.loss_D = (self.loss_D_fake + self.loss_D_real) * 0.5
        self.loss_D.backward()

    def backward_G(self) -> None:
        fake_AB = torch.cat((self.real_A, self.fake_B), 1)
        pred_fake = self.netD(fake_AB)
        self.loss_G_GAN = self.criterionGAN(pred_fake, True)
        self.loss_G_L1 = self.criterionL1(self.fake_B, self.real_B) * self.lambda_L1
        self.loss_G = self.loss_G_GAN + self.loss_G_L1
        self.loss_G.backward()

    def optimize_parameters(self) -> None:
        self.forward()
        set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad()
        self.backward_D()
        self.optimizer_D.step()
        set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.optimizer_G.step()

    def get_current_losses(self) -> dict[str, float]:
        return {n: float(getattr(self, "loss_" + n).detach()) for n in ("G_GAN", "G_L1", "D_real", "D_fake")}
