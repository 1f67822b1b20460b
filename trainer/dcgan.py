"""DCGAN: images from noise, trained on one folder (PyTorch's dcgan example, any power-of-two size).

D is updated on real images versus G's fakes (BCE on logits), then G to make D call its fakes real.
The generator is the engine's ``dcgan`` model family (engine/models/dcgan.py): its file
(``G.safetensors``) is a cyclestream model file whose spec is a DCGANSpec, which ``load_model`` (and
``cyclestream info``) read; ``load_dcgan`` is its generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cyclestream.engine.checkpoint import load_model, save_model
from cyclestream.engine.models.dcgan import DCGANGenerator
from cyclestream.trainer.data import SingleDataset, scan_images
from cyclestream.trainer.losses import GANLoss
from cyclestream.trainer.networks import DCGANDiscriminator, init_weights, set_requires_grad
from cyclestream.trainer.options import TrainingError, TrainOptions
from cyclestream.trainer.plot import grid
from cyclestream.trainer.task import Runtime, Task

LOSSES = ("D_real", "D_fake", "G")


class DCGANTask(Task):
    name = "dcgan"
    losses = LOSSES

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m = options.data, options.model
        assert d.data is not None
        size = int(d.crop_size or 64)
        self.dataset = SingleDataset(scan_images(Path(d.data)), int(d.load_size or size), size, d.flip)
        self.add_net("G", init_weights(DCGANGenerator(m.nz, m.ngf, size), m.init_gain))
        self.add_net("D", init_weights(DCGANDiscriminator(m.ndf, size), m.init_gain))
        self.add_optimizer("G", ["G"])
        self.add_optimizer("D", ["D"])
        self.gan = GANLoss(m.gan_mode or "vanilla")
        self.fixed_noise = torch.randn(64, m.nz, 1, 1, generator=torch.Generator().manual_seed(options.run.seed))

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        real = self.to_device(batch)["image"]
        g, d, plain_d = self.wrapped["G"], self.wrapped["D"], self.nets["D"]
        noise = torch.randn(real.shape[0], self.options.model.nz, 1, 1, device=self.device)
        with self.autocast():
            fake = g(noise)

        set_requires_grad([plain_d], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_real = self.gan(d(real), True)
            loss_fake = self.gan(d(fake.detach()), False)
        self.backward("D", loss_real + loss_fake)
        self.update("D")

        set_requires_grad([plain_d], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_g = self.gan(plain_d(fake), True)
        self.backward("G", loss_g)
        self.update("G")
        set_requires_grad([plain_d], True)
        return {"D_real": loss_real.detach(), "D_fake": loss_fake.detach(), "G": loss_g.detach()}

    def sample_grid(self, count: int) -> np.ndarray:
        """An 8×8 grid of images from the same 64 noise vectors every epoch."""
        with self.sampling():
            images = self.nets["G"](self.fixed_noise.to(self.device))
        return grid([list(images[r * 8 : r * 8 + 8]) for r in range(8)])

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        g: DCGANGenerator = self.nets["G"]  # type: ignore[assignment]
        return [save_model(run_dir / "G.safetensors", g, g.spec, {"network": "G", **info})]


def load_dcgan(path: str | Path) -> DCGANGenerator:
    """The DCGAN generator saved by a ``--model dcgan`` run, in eval mode."""
    generator = load_model(path).generator
    if not isinstance(generator, DCGANGenerator):
        raise TrainingError(f"{path} is a {type(generator).__name__}, not a DCGAN generator")
    return generator
