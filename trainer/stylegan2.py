"""StyleGAN2 on one folder of images: rosinality/stylegan2-pytorch's ``train.py`` recipe.

Per iteration i, on a batch of real images x (in [-1, 1]) and latents z ~ N(0, 1) (two of them, the
second's w taking over from a random layer, with probability ``--mixing``), fresh noise in every layer:

- D: ``softplus(D(G(z))) + softplus(-D(x))`` (logistic); every ``--d-reg-every``-th iteration (i = 0
  included) a second update by the R1 penalty ``r1/2 · |∇ₓD(x)|² · d_reg_every``;
- G: ``softplus(-D(G(z)))`` (non-saturating); every ``--g-reg-every``-th a second update by the
  path-length penalty ``path_regularize · g_reg_every · (|J_wᵀ y| − a)²`` on half the batch, a the
  running mean of the path lengths (decay 0.01);
- G_ema ← 0.5^(32/10000) · G_ema + (1 − that) · G, the generator that samples and is exported.

Adam at ``--lr`` (0.002) with β = (0, 0.99), both scaled for lazy regularisation (rate × c/(c+1), β to
that power, c the regularisation interval), as the reference does.  The networks are the engine's
StyleGAN2Generator (engine/models/stylegan2.py) and the reference's discriminator
(trainer/stylegan2_networks.py), widths from the published table scaled by ``--ngf``/512.  The
regularisation passes need second derivatives: they run in fp32 and eagerly (a compiled network runs
them uncompiled).  Not built: adaptive augmentation (the reference's ``--augment``, off by default).

``G.safetensors`` is G_ema with its mean w (4096 latents, for truncation): ``cyclestream generate`` walks it.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import autograd

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.models.stylegan2 import StyleGAN2Generator, StyleGAN2Spec, published_channels
from cyclestream.trainer.data import SingleDataset, scan_images
from cyclestream.trainer.networks import set_requires_grad
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.plot import grid
from cyclestream.trainer.stylegan2_networks import StyleGAN2Discriminator
from cyclestream.trainer.task import Runtime, Task

LOSSES = ("D", "G", "R1", "path", "real_score", "fake_score")
EMA_DECAY = 0.5 ** (32 / (10 * 1000))  # the reference's accumulate() rate
PATH_DECAY = 0.01
SAMPLE_GRID = 8  # an 8×8 grid of the same 64 latents every epoch


def scaled_channels(size: int, channel_multiplier: int, ngf: int) -> tuple[int, ...]:
    """The published widths of each resolution 4 … ``size`` px, times ``ngf``/512 (512: the published ones)."""
    return tuple(max(1, round(c * ngf / 512)) for c in published_channels(size, channel_multiplier))


class StyleGAN2Task(Task):
    name = "stylegan2"
    losses = LOSSES

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m = options.data, options.model
        assert d.data is not None and d.crop_size is not None
        size = d.crop_size
        self.dataset = SingleDataset(scan_images(Path(d.data)), int(d.load_size or size), size, d.flip)
        channels = scaled_channels(size, m.channel_multiplier, int(m.ngf or 512))
        self.spec = StyleGAN2Spec(size=size, style_dim=m.latent, n_mlp=m.n_mlp, channels=channels)
        g = self.add_net("G", StyleGAN2Generator(self.spec))
        self.add_net("D", StyleGAN2Discriminator(channels))
        ema = self.add_net("G_ema", copy.deepcopy(g)).eval()  # the reference's accumulate(g_ema, g, 0)
        ema.requires_grad_(False)
        self.add_optimizer("G", ["G"], ratio=m.g_reg_every / (m.g_reg_every + 1))
        self.add_optimizer("D", ["D"], ratio=m.d_reg_every / (m.d_reg_every + 1))
        self.iteration = 0
        self.mean_path_length = torch.zeros((), device=self.device)
        self.fixed_z = torch.randn(SAMPLE_GRID**2, m.latent, generator=torch.Generator().manual_seed(options.run.seed))

    # ----------------------------------------------------------------------------- one iteration

    def generate(self, batch: int) -> dict[str, Any]:
        """G's arguments for a batch: z, and with probability ``mixing`` a second z and its crossover layer."""
        m = self.options.model
        z = torch.randn(batch, m.latent, device=self.device)
        if m.mixing > 0 and float(torch.rand(())) < m.mixing:
            crossover = int(torch.randint(1, self.nets["G"].latents, ()))  # type: ignore[operator]
            return {"z": z, "mix": torch.randn(batch, m.latent, device=self.device), "crossover": crossover,
                    "random_noise": True}  # fmt: skip
        return {"z": z, "random_noise": True}

    @contextlib.contextmanager
    def exact(self) -> Iterator[None]:
        """fp32 and eager, for the passes that take second derivatives."""
        eager = torch.compiler.set_stance("force_eager") if self.speed.compile else contextlib.nullcontext()
        with eager, torch.autocast(self.device.type, enabled=False):
            yield

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        m = self.options.model
        real = self.to_device(batch)["image"]
        g, d = self.wrapped["G"], self.wrapped["D"]
        plain_g, plain_d = self.nets["G"], self.nets["D"]
        losses: dict[str, torch.Tensor | float] = {}

        set_requires_grad([plain_g], False)
        set_requires_grad([plain_d], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            with torch.no_grad():  # G is not trained by this pass
                fake = plain_g(**self.generate(real.shape[0]))
            fake_pred = d(fake)
            real_pred = d(real)
            loss_d = F.softplus(-real_pred.float()).mean() + F.softplus(fake_pred.float()).mean()
        self.backward("D", loss_d)
        self.update("D")
        losses.update(D=loss_d.detach(), real_score=real_pred.detach().float().mean(),
                      fake_score=fake_pred.detach().float().mean())  # fmt: skip

        if self.iteration % m.d_reg_every == 0:
            real = real.detach().requires_grad_(True)
            with self.exact():
                real_pred = d(real)
                (grad,) = autograd.grad(real_pred.sum(), real, create_graph=True)
                r1 = grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
            self.optimizers["D"].zero_grad(set_to_none=True)
            self.backward("D", m.r1 / 2 * r1 * m.d_reg_every + 0 * real_pred[0, 0])
            self.update("D")
            losses["R1"] = r1.detach()

        set_requires_grad([plain_g], True)
        set_requires_grad([plain_d], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_g = F.softplus(-d(g(**self.generate(real.shape[0]))).float()).mean()
        self.backward("G", loss_g)
        self.update("G")
        losses["G"] = loss_g.detach()

        if self.iteration % m.g_reg_every == 0:
            with self.exact():
                image, w = g(**self.generate(max(1, real.shape[0] // 2)), return_latents=True)
                noise = torch.randn_like(image) / math.sqrt(image.shape[2] * image.shape[3])
                (grad,) = autograd.grad((image * noise).sum(), w, create_graph=True)
                lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))
                path_mean = self.mean_path_length + PATH_DECAY * (lengths.mean() - self.mean_path_length)
                path = (lengths - path_mean).pow(2).mean()
            self.optimizers["G"].zero_grad(set_to_none=True)
            self.backward("G", m.path_regularize * m.g_reg_every * path + 0 * image[0, 0, 0, 0])
            self.update("G")
            self.mean_path_length = path_mean.detach()
            losses["path"] = path.detach()
        set_requires_grad([plain_d], True)

        with torch.no_grad():
            for e, p in zip(self.nets["G_ema"].parameters(), plain_g.parameters(), strict=True):
                e.lerp_(p, 1 - EMA_DECAY)
        self.iteration += 1
        return losses

    # ----------------------------------------------------------------------------- outputs

    def sample_grid(self, count: int) -> np.ndarray:
        """An 8×8 grid of G_ema's images of the same 64 latents every epoch (fixed noise, no truncation)."""
        with self.sampling():
            images = self.nets["G_ema"](self.fixed_z.to(self.device))
        return grid([list(images[r * SAMPLE_GRID : (r + 1) * SAMPLE_GRID]) for r in range(SAMPLE_GRID)])

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        ema: StyleGAN2Generator = copy.deepcopy(self.nets["G_ema"]).cpu().float()  # type: ignore[assignment]
        with torch.no_grad():
            ema.mean_latent = ema.average_latent()
        return [save_model(run_dir / "G.safetensors", ema, self.spec, {"network": "G_ema", **info})]

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "iteration": self.iteration, "mean_path_length": self.mean_path_length}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.iteration = int(state["iteration"])
        self.mean_path_length = state["mean_path_length"].to(self.device)
