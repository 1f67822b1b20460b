"""StarGAN v1: one generator translating to any of the domains of ``--dataroot`` (one folder each).

The objective is yunjey/stargan ``solver.py``'s with softmax domains (its RaFD setting):

- D: ``-mean(D_src(x))`` + ``mean(D_src(G(x, c_trg)))`` + λ_cls · CE(D_cls(x), c_org) + λ_gp · GP, the
  gradient penalty ``mean((‖∂D_src(x̂)/∂x̂‖₂ − 1)²)`` at ``x̂ = α x + (1 − α) G(x, c_trg)``, α ~ U(0, 1) per
  image; every iteration.
- G, every ``n_critic``-th iteration: ``-mean(D_src(G(x, c_trg)))`` + λ_cls · CE(D_cls(G(x, c_trg)), c_trg)
  + λ_rec · mean|x − G(G(x, c_trg), c_org)|, the fake made again after D's update.

Where this departs from the reference: each image's target domain is drawn by the dataset from the
sample's own random numbers (so a resumed run sees the same targets) instead of a permutation of the
batch's labels; the discriminator (``StarGANDiscriminator``, the reference's layer list) is sized by the
crop: as many stride-2 convolutions as bring it to 2×2, at most the reference's 6.  The generator is
the engine's ``stargan`` family (engine/models/stargan.py); ``G.safetensors`` names the domains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.models.stargan import StarGANGenerator, StarGANSpec
from cyclestream.trainer.data import SampleKey, _Folder, scan_images
from cyclestream.trainer.networks import init_weights
from cyclestream.trainer.options import TrainingError, TrainOptions
from cyclestream.trainer.plot import grid
from cyclestream.trainer.task import Runtime, Task

LOSSES = ("D_real", "D_fake", "D_cls", "D_gp", "G_fake", "G_rec", "G_cls")
MAX_D_LAYERS = 6


class DomainFolders(_Folder):
    """One folder of images per domain (sorted by name), in ``root`` or in ``root/train``; each sample: its
    image, its domain and a target domain drawn from the sample's random numbers."""

    def __init__(self, root: Path, load_size: int, crop_size: int, flip: bool) -> None:
        super().__init__(load_size, crop_size, flip)
        if (Path(root) / "train").is_dir():  # `data emoji-domains`: train/STYLE (test/STYLE is held out)
            root = Path(root) / "train"
        folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(folders) < 2:
            raise TrainingError(f"{root}: stargan needs at least two domain folders, found {len(folders)}")
        self.domains = [p.name for p in folders]
        self.items = [(f, i) for i, folder in enumerate(folders) for f in scan_images(folder, f"domain {folder.name}")]

    def __len__(self) -> int:
        return len(self.items)

    def _item(self, index: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        path, domain = self.items[index % len(self.items)]
        target = int(rng.integers(0, len(self.domains))) if rng is not None else (domain + 1) % len(self.domains)
        return {"image": self._sample(path, rng), "label": torch.tensor(domain), "target": torch.tensor(target)}

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        return self._item(key[0], self._rng(key))

    def fixed(self, i: int) -> dict[str, torch.Tensor]:
        return self._item(i, None)


class StarGANDiscriminator(nn.Module):
    """The reference's PatchGAN critic with a domain classifier: stride-2 4×4 convolutions with
    LeakyReLU(0.01), then ``conv1`` (3×3 → 1: real/fake per patch) and ``conv2`` (the whole map → c_dim)."""

    def __init__(self, image_size: int, ndf: int, c_dim: int, layers: int) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.01)]
        ch = ndf
        for _ in range(1, layers):
            seq += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            ch *= 2
        self.main = nn.Sequential(*seq)
        self.conv1 = nn.Conv2d(ch, 1, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(ch, c_dim, image_size // 2**layers, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        return self.conv1(h), self.conv2(h).flatten(1)


def d_layers(image_size: int) -> int:
    """Stride-2 convolutions that bring ``image_size`` to 2×2, at most the reference's 6."""
    return min(MAX_D_LAYERS, image_size.bit_length() - 2)


def gradient_penalty(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """mean((‖∂out/∂x‖₂ − 1)²) over the batch, differentiable (for D's update)."""
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out), create_graph=True)
    return ((grad.flatten(1).square().sum(1).sqrt() - 1) ** 2).mean()


class StarGANTask(Task):
    name = "stargan"
    losses = LOSSES

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m = options.data, options.model
        root = d.dataroot or d.data  # a folder of domain folders
        assert root is not None
        size = int(d.crop_size or 128)
        self.dataset = DomainFolders(Path(root), int(d.load_size or size), size, d.flip)
        self.domains = self.dataset.domains
        self.spec = StarGANSpec(c_dim=len(self.domains), ngf=int(m.ngf or 64), repeat_num=int(m.n_blocks or 0))
        self.add_net("G", init_weights(StarGANGenerator(self.spec), m.init_gain))
        self.add_net(
            "D", init_weights(StarGANDiscriminator(size, m.ndf, len(self.domains), d_layers(size)), m.init_gain)
        )
        self.add_optimizer("G", ["G"])
        self.add_optimizer("D", ["D"])
        self.iteration = 0  # counts D updates: G is updated every n_critic-th

    def onehot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels.long(), len(self.domains)).float()

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        b = self.to_device(batch)
        m = self.options.model
        x, label, target = b["image"], b["label"], b["target"]
        c_org, c_trg = self.onehot(label), self.onehot(target)
        g, d = self.wrapped["G"], self.wrapped["D"]

        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            src, cls = d(x)
            loss_real, loss_cls = -src.mean(), F.cross_entropy(cls.float(), label.long())
            fake = g(x, c_trg).detach()
            loss_fake = d(fake)[0].mean()
        alpha = torch.rand(x.shape[0], 1, 1, 1, device=x.device)
        x_hat = (alpha * x + (1 - alpha) * fake.float()).requires_grad_(True)
        # Through the DDP wrapper: autograd.grad to x_hat runs none of D's gradient accumulators, so DDP's
        # all-reduce fires once, in the backward below, on each weight's whole gradient (GP term included).
        loss_gp = gradient_penalty(d(x_hat)[0].float(), x_hat)  # fp32: second derivatives
        self.backward("D", loss_real + loss_fake + m.lambda_cls * loss_cls + m.lambda_gp * loss_gp)
        self.update("D")
        self.iteration += 1
        losses: dict[str, torch.Tensor | float] = {
            "D_real": loss_real.detach(),
            "D_fake": loss_fake.detach(),
            "D_cls": loss_cls.detach(),
            "D_gp": loss_gp.detach(),
        }
        if self.iteration % m.n_critic:
            return losses

        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            fake = g(x, c_trg)
            src, cls = d(fake)
            g_fake, g_cls = -src.mean(), F.cross_entropy(cls.float(), target.long())
            g_rec = (x - g(fake, c_org)).abs().mean()
        self.backward("G", g_fake + m.lambda_rec * g_rec + m.lambda_cls * g_cls)
        self.update("G")  # D's gradients from this pass are cleared before its next update
        return {**losses, "G_fake": g_fake.detach(), "G_rec": g_rec.detach(), "G_cls": g_cls.detach()}

    def sample_grid(self, count: int) -> np.ndarray:
        """Each row: an input, then it translated to every domain."""
        rows = []
        with self.sampling():
            for i in range(max(1, count)):
                x = self.dataset.fixed(i)["image"][None].to(self.device)
                outs = [
                    self.nets["G"](x, self.onehot(torch.tensor([k], device=self.device)))[0]
                    for k in range(len(self.domains))
                ]
                rows.append([x[0], *outs])
        return grid(rows)

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        return [
            save_model(
                run_dir / "G.safetensors", self.nets["G"], self.spec, {"network": "G", "domains": self.domains, **info}
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.iteration = int(state["iteration"])
