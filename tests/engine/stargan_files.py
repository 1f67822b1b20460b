"""A small StarGAN model file whose targets give clearly different pictures, for tests of the jobs that
feed its label (its layer list is checked against the reference in tests/engine/models/)."""

from __future__ import annotations

from pathlib import Path

import torch

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.models import build_generator
from cyclestream.engine.models.stargan import StarGANSpec


def randomised_stargan(path: Path, domains: list[str], *, noise: float = 0.3, ngf: int = 4, repeat_num: int = 1,
                       seed: int = 0) -> Path:
    """``path`` written: a StarGAN over ``domains`` (named in its metadata), its weights pushed away from the
    init by ``noise`` so that each label changes the output."""
    spec = StarGANSpec(c_dim=len(domains), ngf=ngf, repeat_num=repeat_num)
    torch.manual_seed(seed)
    net = build_generator(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(noise * torch.randn_like(p))
    return save_model(path, net, spec, {"domains": domains})
