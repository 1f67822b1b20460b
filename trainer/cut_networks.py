"""What only CUT/FastCUT training needs: the anti-aliased PatchGAN, the MLP feature heads that sample
patches (the reference's ``PatchSampleF`` with ``netF mlp_sample``), PatchNCE, and the reference's
``init_type=xavier`` initialisation.

Patch positions and the flip of FastCUT are drawn from torch's global CPU generator, which the training
state saves and restores, so a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.engine.models.cut import Downsample
from cyclestream.engine.models.norm import norm_layer


class AntialiasedDiscriminator(nn.Module):
    """The reference's PatchGAN (``netD basic``): each stride-2 convolution of the CycleGAN one becomes a
    stride-1 convolution followed by ``Downsample``."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        use_bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, padding=1), nn.LeakyReLU(0.2, True), Downsample(ndf)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1, bias=use_bias),
                norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
                Downsample(ndf * mult),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1, bias=use_bias),
            norm_layer(norm, ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its L2 norm (+1e-7), as the reference's ``Normalize(2)``."""
    return x / (x.pow(2).sum(1, keepdim=True).pow(0.5) + 1e-7)


class PatchSampler(nn.Module):
    """One MLP head per feature layer (``mlp_N``: Linear(C, nc), ReLU, Linear(nc, nc)); ``forward`` takes
    ``num_patches`` positions of each feature map (the same for every image of the batch: drawn afresh,
    or the given ones), runs them through the layer's head and L2-normalises them."""

    def __init__(self, channels: Sequence[int], nc: int = 256) -> None:
        super().__init__()
        for i, c in enumerate(channels):
            setattr(self, f"mlp_{i}", nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)))
        self.count = len(channels)

    def forward(
        self, feats: Sequence[torch.Tensor], num_patches: int, patch_ids: Sequence[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        out, ids = [], []
        for i, feat in enumerate(feats):
            rows = feat.permute(0, 2, 3, 1).flatten(1, 2)  # (B, H*W, C)
            if patch_ids is None:
                chosen = torch.randperm(rows.shape[1])[: min(num_patches, rows.shape[1])]
            else:
                chosen = patch_ids[i]
            chosen = chosen.to(feat.device)
            sample = rows[:, chosen, :].flatten(0, 1)
            out.append(l2_normalise(getattr(self, f"mlp_{i}")(sample)))
            ids.append(chosen)
        return out, ids


def patch_nce(feat_q: torch.Tensor, feat_k: torch.Tensor, batch: int, temperature: float) -> torch.Tensor:
    """PatchNCE per query patch: cross-entropy of its positive (the key at the same position) against the
    other positions of the same image (negatives), logits / ``temperature``; keys carry no gradient."""
    feat_q, feat_k = feat_q.float(), feat_k.detach().float()
    patches, dim = feat_q.shape
    positive = torch.bmm(feat_q.view(patches, 1, dim), feat_k.view(patches, dim, 1)).view(patches, 1)
    q, k = feat_q.view(batch, -1, dim), feat_k.view(batch, -1, dim)
    negatives = torch.bmm(q, k.transpose(2, 1))
    n = q.shape[1]
    negatives = negatives.masked_fill(torch.eye(n, device=q.device, dtype=torch.bool)[None], -10.0).view(-1, n)
    logits = torch.cat((positive, negatives), dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(patches, dtype=torch.long, device=q.device), reduction="none")
