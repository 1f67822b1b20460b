"""DCGAN: images from noise, trained on one folder (PyTorch's dcgan example, any power-of-two size).

D is updated on real images versus G's fakes (BCE on logits), then G to make D call its fakes real.
The generator is not an image-to-image model, so its file (``G.safetensors``) carries its own
``dcgan`` metadata instead of a GeneratorSpec; ``load_dcgan`` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cyclestream.engine.atomic import atomic_output
from cyclestream.trainer.data import SingleDataset, scan_images
from cyclestream.trainer.losses import GANLoss
from cyclestream.trainer.networks import DCGANDiscriminator, DCGANGenerator, init_weights, set_requires_grad
from cyclestream.trainer.options import TrainOptions
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
        return {"D_real": float(loss_real.detach()), "D_fake": float(loss_fake.detach()), "G": float(loss_g.detach())}

    def sample_grid(self, count: int) -> np.ndarray:
        """An 8×8 grid of images from the same 64 noise vectors every epoch."""
        with self.sampling():
            images = self.nets["G"](self.fixed_noise.to(self.device))
        return grid([list(images[r * 8 : r * 8 + 8]) for r in range(8)])

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        g: DCGANGenerator = self.nets["G"]  # type: ignore[assignment]
        meta = {"dcgan": {"nz": g.nz, "ngf": g.ngf, "image_size": g.image_size}, "network": "G", **info}
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in g.state_dict().items()
                 if not k.endswith("num_batches_tracked")}
        target = run_dir / "G.safetensors"
        with atomic_output(target) as tmp:
            save_file(state, str(tmp), metadata={"cyclestream": json.dumps(meta, sort_keys=True)})
        return [target]


def load_dcgan(path: str | Path) -> DCGANGenerator:
    """The DCGAN generator saved by a ``--model dcgan`` run, in eval mode."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["cyclestream"])["dcgan"]
        state = {k: f.get_tensor(k) for k in f.keys()}
    g = DCGANGenerator(meta["nz"], meta["ngf"], meta["image_size"])
    g.load_state_dict(state, strict=False)
    return g.eval()
