"""BicycleGAN: a U-Net generator G(A, z), an encoder E(B) → N(μ, σ²) and two multi-scale PatchGANs on aligned
A|B images (junyanz/BicycleGAN ``BiCycleGANModel.optimize_parameters``).

Each batch is split in halves; only the first half's A images are translated:

- cVAE-GAN: z_E = μ + σ·ε from E(B₁), fake₁ = G(A₁, z_E); λ_L1·|fake₁ − B₁|, λ_KL·KL(N(μ, σ²) ‖ N(0, 1))
  (the sum over the batch and z), λ_GAN·D(fake₁) against real.
- cLR-GAN: z ~ N(0, 1), fake₂ = G(A₁, z); λ_GAN2·D2(fake₂) against real, and the latent regression
  λ_z·|μ(E(fake₂)) − z|, which trains G only (E's weights are held out of it).
- G and E step together; then D on (B₁ real, fake₁) and D2 on (B₂ real, fake₂), each the sum of its two
  LSGAN terms over both scales, on the fakes of this iteration's forward pass.

The reference's three choices: ``--where-add`` (z at the input image or at every U-Net level: the
generator's layout, saved as such), ``--use-same-d`` (no D2: D judges both halves, in G's loss and in
one step of D over both pairs' losses) and ``--conditional-d`` (the discriminators take the input image
and the output side by side, 3 + 3 channels: (A₁, fake₁), (A₁, B₁), (A₁, fake₂) and (A₂, B₂)).

A batch smaller than the per-process batch (an epoch's last) is skipped, as the reference skips it.
Where this departs from the reference: G and E share one Adam (Adam is per weight, so the steps are
the same; one gradient scaler for fp16); the latent regression and the G/E losses are one backward
pass (E's weights detached in the regression) instead of two with E frozen in between, the same
gradients summed in another order; ε and z are drawn on the training device; the encoder's blocks follow
the crop (``resnet_256`` at 256 px, ``resnet_128`` at 128, one fewer per halving).  The generator is the
engine's ``bicyclegan`` family (engine/models/bicyclegan.py); ``G.safetensors`` and the reference's
``latest_net_G.pth`` / ``latest_net_E.pth`` are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.models.bicyclegan import BicycleGANGenerator, BicycleGANSpec
from cyclestream.engine.official_export import official_file_name, write_official
from cyclestream.trainer.bicyclegan_networks import MultiScaleDiscriminator, ResNetEncoder, add_dropout, encoder_blocks
from cyclestream.trainer.data import AlignedDataset, scan_images
from cyclestream.trainer.losses import GANLoss
from cyclestream.trainer.networks import init_weights, set_requires_grad
from cyclestream.trainer.options import TrainOptions, per_process_batch
from cyclestream.trainer.plot import grid
from cyclestream.trainer.task import Runtime, Task, direction_metadata

LOSSES = ("G_GAN", "D", "G_GAN2", "D2", "G_L1", "z_L1", "kl")
SAMPLE_ZS = 3  # z samples in each row of the epoch's picture
D_LAYERS, D_SCALES = 3, 2  # the reference's basic_256_multi with --num_Ds 2


class BicycleGANTask(Task):
    name = "bicyclegan"
    losses = LOSSES

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m, o = options.data, options.model, options.optim
        assert d.data is not None and m.nz is not None
        crop = int(d.crop_size or 0)
        self.dataset = AlignedDataset(
            scan_images(Path(d.data), "aligned data"), int(d.load_size or 0), crop, d.flip, d.direction
        )
        a, b = (d.name_a or "A"), (d.name_b or "B")
        self.domains = (b, a) if d.direction == "BtoA" else (a, b)
        self.batch = per_process_batch(int(o.batch_size or 2), runtime.world_size, options.run.ddp_recipe)
        self.spec = BicycleGANSpec(nz=m.nz, ngf=int(m.ngf or 64), n_blocks=int(m.n_blocks or 8), where_add=m.where_add)
        g = BicycleGANGenerator(self.spec)
        if m.dropout:
            add_dropout(g, self.spec.n_blocks)
        xavier = {"gain": m.init_gain, "init_type": "xavier"}  # the reference's --init_type xavier
        self.add_net("G", init_weights(g, **xavier))
        self.add_net("E", init_weights(ResNetEncoder(3, m.nz, m.nef, encoder_blocks(crop)), **xavier))
        weights = (("D", m.lambda_gan), ("D2", 0.0 if m.use_same_d else m.lambda_gan2))
        self.discriminators = [n for n, weight in weights if weight > 0]
        self.judge2 = "D" if m.use_same_d else "D2"  # the discriminator of the cLR-GAN half
        d_input = 3 + 3 if m.conditional_d else 3  # the reference's input_nc + output_nc
        for name in self.discriminators:
            self.add_net(name, init_weights(MultiScaleDiscriminator(d_input, m.ndf, D_LAYERS, D_SCALES), **xavier))
        self.add_optimizer("G", ["G", "E"])
        for name in self.discriminators:
            self.add_optimizer(name, [name])
        self.gan = GANLoss(m.gan_mode or "lsgan")
        self.sample_z = torch.randn(SAMPLE_ZS, m.nz, generator=torch.Generator().manual_seed(options.run.seed))

    def gan_loss(self, predictions: list[torch.Tensor], real: bool) -> torch.Tensor:
        """The reference's GANLoss over a multi-scale prediction: the sum of each scale's."""
        return torch.stack([self.gan(p, real) for p in predictions]).sum()

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        b = self.to_device(batch)
        real_a, real_b = b["A"], b["B"]
        if real_a.shape[0] != self.batch:
            return {}
        m, half = self.options.model, self.batch // 2
        a_enc, b_enc, b_rand = real_a[:half], real_b[:half], real_b[half:]
        g, e = self.wrapped["G"], self.wrapped["E"]
        zero = torch.zeros((), device=self.device)

        with self.autocast():
            mu, logvar = (t.float() for t in e(b_enc))
        eps = torch.randn(mu.shape, device=self.device)
        z_random = torch.randn(half, mu.shape[1], device=self.device)
        z_encoded = eps * logvar.mul(0.5).exp() + mu
        with self.autocast():
            fake_enc = g(a_enc, z_encoded)
            fake_rand = g(a_enc, z_random)
        if m.conditional_d:  # (input, output) pairs; the real cLR-GAN pair is the second half's own
            pairs = {
                "D": (torch.cat([a_enc, b_enc], 1), torch.cat([a_enc, fake_enc], 1)),
                "D2": (torch.cat([real_a[half:], b_rand], 1), torch.cat([a_enc, fake_rand], 1)),
            }
        else:
            pairs = {"D": (b_enc, fake_enc), "D2": (b_rand, fake_rand)}

        set_requires_grad([self.nets[n] for n in self.discriminators], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            nets, fake1, fake2 = self.nets, pairs["D"][1], pairs["D2"][1]
            loss_gan = self.gan_loss(nets["D"](fake1), True) * m.lambda_gan if m.lambda_gan > 0 else zero
            loss_gan2 = self.gan_loss(nets[self.judge2](fake2), True) * m.lambda_gan2 if m.lambda_gan2 > 0 else zero
            loss_kl = torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) * (-0.5 * m.lambda_kl)
            loss_l1 = F.l1_loss(fake_enc.float(), b_enc) * float(m.lambda_l1 or 0)
            loss_z = zero
            if m.lambda_z > 0:  # through E's activations into G; E's weights detached
                plain_e = self.nets["E"]
                held = {k: v.detach() for k, v in plain_e.named_parameters()}
                mu2 = functional_call(plain_e, held, (fake_rand,))[0]
                loss_z = F.l1_loss(mu2.float(), z_random) * m.lambda_z
        self.backward("G", loss_gan + loss_gan2 + loss_l1 + loss_kl + loss_z)
        self.update("G")

        losses: dict[str, torch.Tensor | float] = {
            "G_GAN": loss_gan.detach(),
            "G_GAN2": loss_gan2.detach(),
            "G_L1": loss_l1.detach(),
            "z_L1": loss_z.detach(),
            "kl": loss_kl.detach(),
        }
        set_requires_grad([self.nets[n] for n in self.discriminators], True)
        for name in self.discriminators:  # with --use-same-d, D alone: both pairs' losses, one step
            keys = [key for key in pairs if (self.judge2 if key == "D2" else "D") == name]
            d = self.wrapped[name]
            self.optimizers[name].zero_grad(set_to_none=True)
            with self.autocast():
                terms = {}
                for key in keys:
                    real, fake = pairs[key]
                    terms[key] = self.gan_loss(d(fake.detach()), False) + self.gan_loss(d(real), True)
            self.backward(name, torch.stack(list(terms.values())).sum())
            self.update(name)
            losses.update({key: term.detach() for key, term in terms.items()})
        return losses

    def sample_grid(self, count: int) -> np.ndarray:
        """Rows ``input | G(input, z) for a few fixed z | target``."""
        rows = []
        with self.sampling():
            z = self.sample_z.to(self.device)
            for i in range(max(1, count)):
                s = self.dataset.fixed(i)
                a = s["A"].unsqueeze(0).to(self.device).expand(z.shape[0], -1, -1, -1)
                rows.append([s["A"], *self.nets["G"](a, z), s["B"]])
        return grid(rows)

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        src, dst = self.domains
        meta = {**direction_metadata(self.domains, src, dst, "G"), **info}
        for name in ("G", "E"):  # the reference's files of them
            write_official(self.nets[name], run_dir / official_file_name(name))
        return [save_model(run_dir / "G.safetensors", self.nets["G"], self.spec, meta)]
