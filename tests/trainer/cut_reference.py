"""An independent re-implementation of the reference CUT / FastCUT training step.

``CUTModel.optimize_parameters`` (taesungp/contrastive-unpaired-translation: models/cut_model.py, with
models/patchnce.py ``PatchNCELoss`` and models/networks.py ``PatchSampleF``, ``NLayerDiscriminator``),
written out again method for method.  Nothing here imports the trainer; the generator is the reference
layer list of tests/engine/models/test_cut_family.py (an ``nn.Sequential`` whose index N is ``model.N``)
and the discriminator the reference PatchGAN built here.

One departure, needed to compare runs draw for draw: the reference draws its patch positions with
``np.random.permutation`` and its FastCUT coin with ``np.random.random()``; here both come from the
callables handed in (``permutation(n)``, ``coin()``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tests.engine.models.test_cut_family import RefDown
from tests.trainer.official_reference import GANLoss, set_requires_grad


def reference_discriminator(input_nc: int, ndf: int, n_layers: int) -> nn.Sequential:
    """``NLayerDiscriminator`` (instance norm, anti-aliased): stride-1 4x4 convs each followed by a blur-pool."""
    seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 1, 1), nn.LeakyReLU(0.2, True), RefDown(ndf)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2**n, 8)
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1),
            nn.InstanceNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            RefDown(ndf * mult),
        ]
    prev, mult = mult, min(2**n_layers, 8)
    seq += [
        nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1),
        nn.InstanceNorm2d(ndf * mult),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * mult, 1, 4, 1, 1),
    ]
    return nn.Sequential(*seq)


class PatchSampleF(nn.Module):
    """``PatchSampleF(use_mlp=True)``, its heads made up front for the given channels."""

    def __init__(self, channels: list[int], nc: int, permutation: Callable[[int], torch.Tensor]) -> None:
        super().__init__()
        for i, c in enumerate(channels):
            setattr(self, f"mlp_{i}", nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)))
        self.permutation = permutation

    def forward(
        self, feats: list[torch.Tensor], num_patches: int, patch_ids: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return_ids, return_feats = [], []
        for feat_id, feat in enumerate(feats):
            feat_reshape = feat.permute(0, 2, 3, 1).flatten(1, 2)
            if patch_ids is not None:
                patch_id = patch_ids[feat_id]
            else:
                patch_id = self.permutation(feat_reshape.shape[1])[: int(min(num_patches, feat_reshape.shape[1]))]
            x_sample = feat_reshape[:, patch_id, :].flatten(0, 1)
            x_sample = getattr(self, f"mlp_{feat_id}")(x_sample)
            return_ids.append(patch_id)
            norm = x_sample.pow(2).sum(1, keepdim=True).pow(1.0 / 2)
            return_feats.append(x_sample.div(norm + 1e-7))
        return return_feats, return_ids


def patch_nce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, batch_size: int, nce_t: float) -> torch.Tensor:
    """``PatchNCELoss.forward`` (negatives from the same image only)."""
    num_patches, dim = feat_q.shape
    feat_k = feat_k.detach()
    l_pos = torch.bmm(feat_q.view(num_patches, 1, -1), feat_k.view(num_patches, -1, 1)).view(num_patches, 1)
    feat_q = feat_q.view(batch_size, -1, dim)
    feat_k = feat_k.view(batch_size, -1, dim)
    npatches = feat_q.size(1)
    l_neg_curbatch = torch.bmm(feat_q, feat_k.transpose(2, 1))
    diagonal = torch.eye(npatches, dtype=torch.bool)[None, :, :]
    l_neg_curbatch.masked_fill_(diagonal, -10.0)
    l_neg = l_neg_curbatch.view(-1, npatches)
    out = torch.cat((l_pos, l_neg), dim=1) / nce_t
    return nn.CrossEntropyLoss(reduction="none")(out, torch.zeros(out.size(0), dtype=torch.long))


class CUTModel:
    """models/cut_model.py ``CUTModel`` in training mode (``netF mlp_sample``)."""

    def __init__(
        self,
        netG: nn.Sequential,
        netF: PatchSampleF,
        netD: nn.Module,
        *,
        coin: Callable[[], float],
        lr: float,
        beta1: float,
        beta2: float,
        gan_mode: str,
        lambda_GAN: float,
        lambda_NCE: float,
        nce_idt: bool,
        nce_layers: list[int],
        num_patches: int,
        nce_T: float,
        flip_equivariance: bool,
        batch_size: int,
    ) -> None:
        self.netG, self.netF, self.netD = netG.train(), netF.train(), netD.train()
        self.coin = coin
        self.lambda_GAN, self.lambda_NCE, self.nce_idt = lambda_GAN, lambda_NCE, nce_idt
        self.nce_layers, self.num_patches, self.nce_T = nce_layers, num_patches, nce_T
        self.flip_equivariance, self.batch_size = flip_equivariance, batch_size
        self.criterionGAN = GANLoss(gan_mode)
        self.optimizer_G = torch.optim.Adam(netG.parameters(), lr=lr, betas=(beta1, beta2))
        self.optimizer_D = torch.optim.Adam(netD.parameters(), lr=lr, betas=(beta1, beta2))
        self.optimizer_F = torch.optim.Adam(netF.parameters(), lr=lr, betas=(beta1, beta2))

    def set_input(self, input: dict[str, torch.Tensor]) -> None:
        self.real_A, self.real_B = input["A"], input["B"]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``netG(x, nce_layers, encode_only=True)``."""
        feats = []
        for layer_id, layer in enumerate(self.netG):
            x = layer(x)
            if layer_id in self.nce_layers:
                feats.append(x)
            if layer_id == self.nce_layers[-1]:
                return feats
        return feats

    def forward(self) -> None:
        self.real = torch.cat((self.real_A, self.real_B), dim=0) if self.nce_idt else self.real_A
        if self.flip_equivariance:
            self.flipped_for_equivariance = self.coin() < 0.5
            if self.flipped_for_equivariance:
                self.real = torch.flip(self.real, [3])
        self.fake = self.netG(self.real)
        self.fake_B = self.fake[: self.real_A.size(0)]
        if self.nce_idt:
            self.idt_B = self.fake[self.real_A.size(0) :]

    def compute_D_loss(self) -> torch.Tensor:
        fake = self.fake_B.detach()
        self.loss_D_fake = self.criterionGAN(self.netD(fake), False).mean()
        self.loss_D_real = self.criterionGAN(self.netD(self.real_B), True).mean()
        self.loss_D = (self.loss_D_fake + self.loss_D_real) * 0.5
        return self.loss_D

    def compute_G_loss(self) -> torch.Tensor:
        self.loss_G_GAN = self.criterionGAN(self.netD(self.fake_B), True).mean() * self.lambda_GAN
        self.loss_NCE = self.calculate_NCE_loss(self.real_A, self.fake_B)
        if self.nce_idt:
            self.loss_NCE_Y = self.calculate_NCE_loss(self.real_B, self.idt_B)
            loss_NCE_both = (self.loss_NCE + self.loss_NCE_Y) * 0.5
        else:
            loss_NCE_both = self.loss_NCE
        self.loss_G = self.loss_G_GAN + loss_NCE_both
        return self.loss_G

    def calculate_NCE_loss(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        n_layers = len(self.nce_layers)
        feat_q = self.encode(tgt)
        if self.flip_equivariance and self.flipped_for_equivariance:
            feat_q = [torch.flip(fq, [3]) for fq in feat_q]
        feat_k = self.encode(src)
        feat_k_pool, sample_ids = self.netF(feat_k, self.num_patches, None)
        feat_q_pool, _ = self.netF(feat_q, self.num_patches, sample_ids)
        total_nce_loss = 0.0
        for f_q, f_k in zip(feat_q_pool, feat_k_pool, strict=True):
            total_nce_loss += (patch_nce_loss(f_q, f_k, self.batch_size, self.nce_T) * self.lambda_NCE).mean()
        return total_nce_loss / n_layers  # type: ignore[return-value]

    def optimize_parameters(self) -> None:
        self.forward()
        set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad()
        self.loss_D = self.compute_D_loss()
        self.loss_D.backward()
        self.optimizer_D.step()
        set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad()
        self.optimizer_F.zero_grad()
        self.loss_G = self.compute_G_loss()
        self.loss_G.backward()
        self.optimizer_G.step()
        self.optimizer_F.step()

    def get_current_losses(self) -> dict[str, float]:
        names = ["G_GAN", "D_real", "D_fake", "G", "NCE", *(["NCE_Y"] if self.nce_idt else [])]
        return {name: float(torch.as_tensor(getattr(self, f"loss_{name}")).detach()) for name in names}
