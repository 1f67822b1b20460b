"""pix2pix: an engine U-Net generator and a conditional PatchGAN on aligned A|B images.

The step is the official ``Pix2PixModel.optimize_parameters``: G makes fake B from real A; D is
updated on (A, fake B) versus (A, real B) pairs concatenated along channels; then G on the GAN loss
through the frozen D plus λ·L1(fake B, real B), λ = 100.  The fake pairs D sees come through an
image pool when ``--pool-size`` asks for one (the official default for pix2pix is none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.models import build_generator
from cyclestream.engine.official_export import official_file_name, write_official
from cyclestream.trainer.cyclegan import generator_spec
from cyclestream.trainer.data import AlignedDataset, scan_images
from cyclestream.trainer.losses import GANLoss, ImagePool
from cyclestream.trainer.networks import NLayerDiscriminator, init_weights, set_requires_grad
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.plot import grid
from cyclestream.trainer.task import Runtime, Task, direction_metadata

LOSSES = ("G_GAN", "G_L1", "D_real", "D_fake")


class Pix2PixTask(Task):
    name = "pix2pix"
    losses = LOSSES

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m = options.data, options.model
        assert d.data is not None
        self.dataset = AlignedDataset(scan_images(Path(d.data), "aligned data"), int(d.load_size or 0),
                                      int(d.crop_size or 0), d.flip, d.direction)
        a, b = (d.name_a or "A"), (d.name_b or "B")
        self.domains = (b, a) if d.direction == "BtoA" else (a, b)
        self.spec = generator_spec(options, kind="unet")
        self.add_net("G", init_weights(build_generator(self.spec), m.init_gain))
        self.add_net("D", init_weights(NLayerDiscriminator(6, m.ndf, m.n_layers_d, m.norm or "batch"), m.init_gain))
        self.add_optimizer("G", ["G"])
        self.add_optimizer("D", ["D"])
        self.gan = GANLoss(m.gan_mode or "vanilla")
        if m.pool_size:
            self.pools = {"fake_AB": ImagePool(int(m.pool_size), options.run.seed * 1000 + runtime.rank * 2)}

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        batch = self.to_device(batch)
        real_a, real_b = batch["A"], batch["B"]
        g, d, plain_d = self.wrapped["G"], self.wrapped["D"], self.nets["D"]
        with self.autocast():
            fake_b = g(real_a)

        set_requires_grad([plain_d], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        fake_ab = torch.cat([real_a, fake_b.detach()], 1)
        if "fake_AB" in self.pools:
            fake_ab = self.pools["fake_AB"].query(fake_ab)
        with self.autocast():
            loss_d_fake = self.gan(d(fake_ab), False)
            loss_d_real = self.gan(d(torch.cat([real_a, real_b], 1)), True)
        self.backward("D", (loss_d_fake + loss_d_real) * 0.5)
        self.update("D")

        set_requires_grad([plain_d], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_g_gan = self.gan(plain_d(torch.cat([real_a, fake_b], 1)), True)
            loss_g_l1 = F.l1_loss(fake_b.float(), real_b) * self.options.model.lambda_l1
        self.backward("G", loss_g_gan + loss_g_l1)
        self.update("G")
        values = (loss_g_gan, loss_g_l1, loss_d_real, loss_d_fake)
        return {k: v.detach() for k, v in zip(LOSSES, values, strict=True)}

    def sample_grid(self, count: int) -> np.ndarray:
        """Rows ``real A | fake B | real B``."""
        rows = []
        with self.sampling():
            for i in range(max(1, count)):
                s = self.dataset.fixed(i)
                a = s["A"].unsqueeze(0).to(self.device)
                rows.append([s["A"], self.nets["G"](a)[0], s["B"]])
        return grid(rows)

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        src, dst = self.domains
        meta = {**direction_metadata(self.domains, src, dst, "G"), **info}
        write_official(self.nets["G"], run_dir / official_file_name("G"))  # the official code's file of it
        return [save_model(run_dir / "G.safetensors", self.nets["G"], self.spec, meta)]
