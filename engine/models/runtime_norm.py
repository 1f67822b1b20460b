"""How a generator's batch norms and dropout behave when it runs: as the official test code runs them.

pytorch-CycleGAN-and-pix2pix's ``test.py`` calls ``model.eval()`` only with ``--eval``; by default its
networks stay in training mode, so a batch norm normalises each frame (batch 1) by that frame's own
mean and variance, and dropout keeps dropping (pix2pix's paper uses it as the noise source).
``--norm-stats frame`` (the default) reproduces the first, ``running`` its ``--eval``; ``--dropout on``
the second.  Both rewrite a copy of the generator into ordinary modules, so every backend runs them:

- ``FrameBatchNorm2d``: the batch norm's weight and bias on per-frame statistics, which is an
  instance norm (``F.instance_norm``, one frame at a time, so a batch of frames gives what batch 1 gives);
- ``AlwaysDropout``: dropout that drops in eval mode too (random per call: eager and compile only).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.engine.models import FamilySpec, GeneratorSpec, build_generator

if TYPE_CHECKING:
    from cyclestream.engine.backends.options import NormStats


class FrameBatchNorm2d(nn.Module):
    """A BatchNorm2d as training mode runs it on one frame: per-channel mean and biased variance of each
    frame, then the norm's affine weight and bias (its running statistics unused).  Statistics in fp32."""

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        channels = norm.num_features
        self.weight = nn.Parameter(norm.weight.detach().clone() if norm.affine else torch.ones(channels))
        self.bias = nn.Parameter(norm.bias.detach().clone() if norm.affine else torch.zeros(channels))
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.instance_norm(x.float(), weight=self.weight.float(), bias=self.bias.float(), eps=self.eps)
        return out.to(x.dtype)


class AlwaysDropout(nn.Module):
    """Dropout that drops whatever the module's mode, as the official test code's training-mode networks do."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True)


def lacks_dropout_sites(spec: FamilySpec) -> bool:
    """Whether the file could not say where its dropout is: a U-Net's dropout adds no keys, so an official
    U-Net file loads without it, though pix2pix builds it with dropout (``--no_dropout`` unset)."""
    return isinstance(spec, GeneratorSpec) and spec.kind == "unet" and not spec.use_dropout


def with_dropout_sites(generator: nn.Module, spec: FamilySpec) -> nn.Module:
    """``generator`` with its dropout layers where pix2pix builds them (a U-Net's inner blocks), when its file
    could not say: the same weights, in a U-Net of ``use_dropout=True`` (off in eval mode, as before)."""
    if not lacks_dropout_sites(spec):
        return generator
    out = build_generator(dataclasses.replace(spec, use_dropout=True))
    out.load_state_dict(generator.state_dict())
    return out.eval()


def has_batch_norm(generator: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())


def may_drop(generator: nn.Module, spec: FamilySpec) -> bool:
    """Whether ``--dropout on`` has dropout to switch on: the generator's own, or pix2pix's U-Net sites."""
    return lacks_dropout_sites(spec) or any(isinstance(m, nn.Dropout) and m.p > 0 for m in generator.modules())


def as_run(generator: nn.Module, spec: FamilySpec, norm_stats: NormStats, dropout: bool) -> nn.Module:
    """``generator`` as it runs with these settings: itself when nothing changes, else a rewritten copy."""
    swap_norm = norm_stats == "frame" and has_batch_norm(generator)
    swap_dropout = dropout and may_drop(generator, spec)
    if not (swap_norm or swap_dropout):
        return generator
    sited = with_dropout_sites(generator, spec) if swap_dropout else generator
    out = copy.deepcopy(generator) if sited is generator else sited  # never the caller's module
    for parent in list(out.modules()):
        for name, child in parent.named_children():
            if swap_norm and isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, FrameBatchNorm2d(child))
            elif swap_dropout and isinstance(child, nn.Dropout) and child.p > 0:
                setattr(parent, name, AlwaysDropout(child.p))
    return out.eval()


def describe(generator: nn.Module, spec: FamilySpec, norm_stats: NormStats, dropout: bool) -> str | None:
    """How its batch norms and dropout run, for the run's first lines and ``info``; None when it has neither."""
    parts = []
    if has_batch_norm(generator):
        parts.append("batch norm on each frame's own statistics (the official test.py default; --norm-stats "
                     "running: its --eval)" if norm_stats == "frame" else
                     "batch norm on its running statistics (the official test.py --eval)")  # fmt: skip
    if may_drop(generator, spec):
        parts.append("dropout on (random every frame, as the official test.py runs it)" if dropout else
                     "dropout off (--dropout on: as the official test.py runs it)")  # fmt: skip
    return "; ".join(parts) or None
