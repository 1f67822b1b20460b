"""CycleGAN: two engine ResNet generators, two PatchGANs, one training step of the official recipe.

G_A: A→B, G_B: B→A; D_A judges B images (real B vs G_A's fakes), D_B judges A images.  The step
is the official ``CycleGANModel.optimize_parameters``: forward both cycles; update both generators
(GAN + cycle + identity losses) with the discriminators frozen; then update D_A and D_B on real
images versus fakes drawn from the image pools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.models import GeneratorSpec, build_generator
from cyclestream.engine.official_export import official_file_name, write_official
from cyclestream.trainer.data import UnalignedDataset, scan_images, unaligned_folders
from cyclestream.trainer.losses import GANLoss, ImagePool
from cyclestream.trainer.networks import NLayerDiscriminator, init_weights, set_requires_grad
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.plot import grid
from cyclestream.trainer.task import Runtime, Task, direction_metadata

LOSSES = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")


def domain_names(options: TrainOptions, a: Path, b: Path) -> tuple[str, str]:
    """--name-a/--name-b, else the folder names (``horse2zebra/trainA`` gives horse, zebra)."""
    d = options.data
    if d.name_a and d.name_b:
        return d.name_a, d.name_b
    guess_a, guess_b = a.name, b.name
    if d.dataroot is not None:
        parts = Path(d.dataroot).name.split("2")
        guess_a, guess_b = (parts[0], parts[1]) if len(parts) == 2 and all(parts) else ("A", "B")
    return d.name_a or guess_a, d.name_b or guess_b


def generator_spec(options: TrainOptions, kind: str = "resnet", input_nc: int = 3) -> GeneratorSpec:
    m = options.model
    return GeneratorSpec(kind=kind, input_nc=input_nc, output_nc=3, ngf=m.ngf, n_blocks=int(m.n_blocks or 0),
                         norm=m.norm or "instance", use_dropout=bool(m.dropout), padding_type=m.padding)


class CycleGANTask(Task):
    name = "cyclegan"
    losses = LOSSES

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m = options.data, options.model
        folder_a, folder_b = unaligned_folders(d.data_a, d.data_b, d.dataroot)
        self.dataset = UnalignedDataset(scan_images(folder_a, "domain A"), scan_images(folder_b, "domain B"),
                                        int(d.load_size or 0), int(d.crop_size or 0), d.flip)
        self.domains = domain_names(options, folder_a, folder_b)
        self.spec = generator_spec(options)
        for name in ("G_A", "G_B"):
            self.add_net(name, init_weights(build_generator(self.spec), m.init_gain))
        for name in ("D_A", "D_B"):
            net = NLayerDiscriminator(3, m.ndf, m.n_layers_d, m.norm or "instance")
            self.add_net(name, init_weights(net, m.init_gain))
        self.add_optimizer("G", ["G_A", "G_B"])
        self.add_optimizer("D", ["D_A", "D_B"])
        seed = options.run.seed * 1000 + runtime.rank * 2
        self.pools = {"fake_A": ImagePool(int(m.pool_size or 0), seed),
                      "fake_B": ImagePool(int(m.pool_size or 0), seed + 1)}
        self.gan = GANLoss(m.gan_mode or "lsgan")

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        m = self.options.model
        batch = self.to_device(batch)
        real_a, real_b = batch["A"], batch["B"]
        g_a, g_b, d_a, d_b = (self.wrapped[n] for n in ("G_A", "G_B", "D_A", "D_B"))
        plain_d_a, plain_d_b = self.nets["D_A"], self.nets["D_B"]

        with self.autocast():
            fake_b = g_a(real_a)
            rec_a = g_b(fake_b)
            fake_a = g_b(real_b)
            rec_b = g_a(fake_a)

        # Generators, discriminators frozen (and called unwrapped: they take no gradient here).
        set_requires_grad([plain_d_a, plain_d_b], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            zero = torch.zeros((), device=self.device)
            loss_idt_a = loss_idt_b = zero
            if m.lambda_identity > 0:
                loss_idt_a = F.l1_loss(g_a(real_b).float(), real_b) * m.lambda_b * m.lambda_identity
                loss_idt_b = F.l1_loss(g_b(real_a).float(), real_a) * m.lambda_a * m.lambda_identity
            loss_g_a = self.gan(plain_d_a(fake_b), True)
            loss_g_b = self.gan(plain_d_b(fake_a), True)
            loss_cycle_a = F.l1_loss(rec_a.float(), real_a) * m.lambda_a
            loss_cycle_b = F.l1_loss(rec_b.float(), real_b) * m.lambda_b
            loss_g = loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b
        self.backward("G", loss_g)
        self.update("G")

        # Discriminators, on real images and pooled fakes.
        set_requires_grad([plain_d_a, plain_d_b], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        pooled_b = self.pools["fake_B"].query(fake_b.detach())
        with self.autocast():
            loss_d_a = (self.gan(d_a(real_b), True) + self.gan(d_a(pooled_b), False)) * 0.5
        self.backward("D", loss_d_a)
        pooled_a = self.pools["fake_A"].query(fake_a.detach())
        with self.autocast():
            loss_d_b = (self.gan(d_b(real_a), True) + self.gan(d_b(pooled_a), False)) * 0.5
        self.backward("D", loss_d_b)
        self.update("D")

        values = (loss_d_a, loss_g_a, loss_cycle_a, loss_idt_a, loss_d_b, loss_g_b, loss_cycle_b, loss_idt_b)
        return {k: v.detach() for k, v in zip(LOSSES, values, strict=True)}

    def sample_grid(self, count: int) -> np.ndarray:
        """Rows ``real A | fake B | rec A`` for each sample, then ``real B | fake A | rec B``."""
        samples = [self.dataset.fixed(i) for i in range(max(1, count))]
        rows_a, rows_b = [], []
        with self.sampling():
            for s in samples:
                a, b = s["A"].unsqueeze(0).to(self.device), s["B"].unsqueeze(0).to(self.device)
                fake_b, fake_a = self.nets["G_A"](a), self.nets["G_B"](b)
                rows_a.append([a[0], fake_b[0], self.nets["G_B"](fake_b)[0]])
                rows_b.append([b[0], fake_a[0], self.nets["G_A"](fake_a)[0]])
        return grid(rows_a + rows_b)

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        """G_A.safetensors (A→B) and G_B.safetensors (B→A): what ``translate --model`` loads; beside them
        ``latest_net_G_A.pth`` and ``latest_net_G_B.pth``, the official code's files of the same weights."""
        name_a, name_b = self.domains
        out = []
        for net, src, dst in (("G_A", name_a, name_b), ("G_B", name_b, name_a)):
            meta = {**direction_metadata(self.domains, src, dst, net), **info}
            out.append(save_model(run_dir / f"{net}.safetensors", self.nets[net], self.spec, meta))
            write_official(self.nets[net], run_dir / official_file_name(net))
        return out
