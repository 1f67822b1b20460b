"""CUT and FastCUT (Park et al. 2020): one engine CUT generator, one anti-aliased PatchGAN, the MLP
feature heads, one training step of the reference recipe.

G: A→B.  The step is the reference ``CUTModel.optimize_parameters``: run G on the real A images (with
the real B images behind them for the identity PatchNCE of CUT; all of them flipped left-right on a coin
toss for FastCUT's flip equivariance); update D on real B versus G's fakes (LSGAN, halved); then update G
and the feature heads together on ``λ_GAN · GAN + PatchNCE`` (the mean of A's and the identity's PatchNCE
when the identity term is on).  PatchNCE compares G's features of the fake with those of its source at
``--nce-layers``, ``--num-patches`` positions per layer through the MLP heads, averaged over the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.models.cut import CutGenerator, CutSpec
from cyclestream.trainer.cut_networks import AntialiasedDiscriminator, PatchSampler, patch_nce
from cyclestream.trainer.cut_options import RECIPES, nce_layers
from cyclestream.trainer.cyclegan import domain_names
from cyclestream.trainer.data import UnalignedDataset, scan_images, unaligned_folders
from cyclestream.trainer.losses import GANLoss
from cyclestream.trainer.networks import init_weights, set_requires_grad
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.plot import grid
from cyclestream.trainer.task import Runtime, Task, direction_metadata


@dataclass(frozen=True)
class NCESettings:
    """The PatchNCE values of a run: its options, the recipe's where the user gave none."""

    lambda_gan: float
    lambda_nce: float
    nce_idt: bool
    flip_equivariance: bool
    layers: tuple[int, ...]
    num_patches: int
    temperature: float

    @classmethod
    def of(cls, options: TrainOptions) -> NCESettings:
        m = options.model
        recipe = RECIPES[m.model]
        return cls(
            lambda_gan=m.lambda_gan,
            lambda_nce=recipe.lambda_nce if m.lambda_nce is None else m.lambda_nce,
            nce_idt=recipe.nce_idt if m.nce_idt is None else m.nce_idt,
            flip_equivariance=recipe.flip_equivariance if m.flip_equivariance is None else m.flip_equivariance,
            layers=tuple(nce_layers(m.nce_layers)),
            num_patches=m.num_patches,
            temperature=m.nce_t,
        )


def cut_spec(options: TrainOptions) -> CutSpec:
    m = options.model
    return CutSpec(
        ngf=m.ngf or 64,
        n_blocks=int(m.n_blocks or 0),
        norm=m.norm or "instance",
        use_dropout=bool(m.dropout),
        padding_type=m.padding,
        antialias=m.antialias,
        antialias_up=m.antialias,
    )


def feature_channels(spec: CutSpec, layers: tuple[int, ...]) -> list[int]:
    """The channels of G's activations at ``layers`` (worked out on the meta device)."""
    with torch.device("meta"):
        feats = CutGenerator(spec).features(torch.zeros(1, spec.input_nc, 32, 32), layers)
    return [int(f.shape[1]) for f in feats]


class CUTTask(Task):
    name = "cut"

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m = options.data, options.model
        self.name = m.model
        folder_a, folder_b = unaligned_folders(d.data_a, d.data_b, d.dataroot)
        self.dataset = UnalignedDataset(
            scan_images(folder_a, "domain A"),
            scan_images(folder_b, "domain B"),
            int(d.load_size or 0),
            int(d.crop_size or 0),
            d.flip,
        )
        self.domains = domain_names(options, folder_a, folder_b)
        self.nce = NCESettings.of(options)
        self.spec = cut_spec(options)
        self.add_net("G", init_weights(CutGenerator(self.spec), m.init_gain, "xavier"))
        heads = PatchSampler(feature_channels(self.spec, self.nce.layers), m.netf_nc)
        self.add_net("F", init_weights(heads, m.init_gain, "xavier"))
        critic = AntialiasedDiscriminator(3, m.ndf, m.n_layers_d, m.norm or "instance")
        self.add_net("D", init_weights(critic, m.init_gain, "xavier"))
        self.add_optimizer("G", ["G"])
        self.add_optimizer("D", ["D"])
        if self.nce.lambda_nce > 0:
            self.add_optimizer("F", ["F"])
        self.gan = GANLoss(m.gan_mode or "lsgan")
        self.losses = ("D_real", "D_fake", "G_GAN", "NCE", *(("NCE_Y",) if self.nce.nce_idt else ()), "G")

    def nce_loss(self, src: torch.Tensor, tgt: torch.Tensor, flipped: bool) -> torch.Tensor:
        """PatchNCE between G's features of ``tgt`` (flipped back when the input was flipped) and of ``src``."""
        # G's features through the plain module (DDP runs only ``forward``): its gradients are still reduced, as
        # the step's DDP forward of G came first; the heads through their wrapper, or each rank keeps its own.
        g, f, s = self.nets["G"], self.wrapped["F"], self.nce
        assert isinstance(g, CutGenerator)
        feat_q = g.features(tgt, s.layers)
        if flipped:
            feat_q = [torch.flip(q, [3]) for q in feat_q]
        feat_k = g.features(src, s.layers)
        pooled_k, ids = f(feat_k, s.num_patches, None)
        pooled_q, _ = f(feat_q, s.num_patches, ids)
        total = torch.zeros((), device=src.device)
        for q, k in zip(pooled_q, pooled_k, strict=True):
            total = total + (patch_nce(q, k, src.shape[0], s.temperature) * s.lambda_nce).mean()
        return total / len(s.layers)

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        s = self.nce
        batch = self.to_device(batch)
        real_a, real_b = batch["A"], batch["B"]
        g, d = self.wrapped["G"], self.wrapped["D"]
        plain_d = self.nets["D"]
        n = real_a.shape[0]

        real = torch.cat((real_a, real_b), 0) if s.nce_idt else real_a
        flipped = s.flip_equivariance and bool(torch.rand(()).item() < 0.5)
        if flipped:
            real = torch.flip(real, [3])
        with self.autocast():
            fake = g(real)
        fake_b, idt_b = fake[:n], fake[n:]

        # Discriminator, on real B and the (detached) fakes.
        set_requires_grad([plain_d], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_d_fake = self.gan(d(fake_b.detach()), False)
            loss_d_real = self.gan(d(real_b), True)
            loss_d = (loss_d_fake + loss_d_real) * 0.5
        self.backward("D", loss_d)
        self.update("D")

        # Generator and feature heads, the discriminator frozen.
        set_requires_grad([plain_d], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        if "F" in self.optimizers:
            self.optimizers["F"].zero_grad(set_to_none=True)
        zero = torch.zeros((), device=self.device)
        with self.autocast():
            loss_g_gan = self.gan(plain_d(fake_b), True) * s.lambda_gan if s.lambda_gan > 0 else zero
            loss_nce = self.nce_loss(real_a, fake_b, flipped) if s.lambda_nce > 0 else zero
            loss_nce_y = zero
            if s.nce_idt and s.lambda_nce > 0:
                loss_nce_y = self.nce_loss(real_b, idt_b, flipped)
                loss_g = loss_g_gan + (loss_nce + loss_nce_y) * 0.5
            else:
                loss_g = loss_g_gan + loss_nce
        self.backward("G", loss_g)
        self.update("G")
        if "F" in self.optimizers:
            self.update("F")

        values = {
            "D_real": loss_d_real,
            "D_fake": loss_d_fake,
            "G_GAN": loss_g_gan,
            "NCE": loss_nce,
            "NCE_Y": loss_nce_y,
            "G": loss_g,
        }
        return {k: values[k].detach() for k in self.losses}

    def sample_grid(self, count: int) -> np.ndarray:
        """Rows ``real A | fake B`` for each sample, then ``real B | G(real B)`` (what identity PatchNCE sees)."""
        samples = [self.dataset.fixed(i) for i in range(max(1, count))]
        rows_a, rows_b = [], []
        g = self.nets["G"]
        with self.sampling():
            for sample in samples:
                a, b = sample["A"].unsqueeze(0).to(self.device), sample["B"].unsqueeze(0).to(self.device)
                rows_a.append([a[0], g(a)[0]])
                rows_b.append([b[0], g(b)[0]])
        return grid(rows_a + rows_b)

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        """G.safetensors (A→B): what ``translate --model`` loads."""
        name_a, name_b = self.domains
        meta = {**direction_metadata(self.domains, name_a, name_b, "G"), **info}
        return [save_model(run_dir / "G.safetensors", self.nets["G"], self.spec, meta)]
