"""``fuse_kernels``: swap a loaded generator's instance norms for the fused custom ops, in place.

What is replaced, and how the state-dict keys stay the same (no swapped slot holds parameters):

- ``InstanceNorm2d`` followed by ``ReLU`` in a Sequential (stem, down-sampling, first half of every
  ResnetBlock, up-sampling) → ``FusedInstanceNorm(act="relu")`` in the norm's slot and ``nn.Identity``
  in the ReLU's slot, so the indices of later layers do not shift.
- each ``ResnetBlock`` → ``FusedResnetBlock`` holding the block's own ``conv_block`` (keys
  ``model.N.conv_block.K.*`` unchanged) with its final norm slot set to ``nn.Identity``; its forward
  is ``instance_norm_residual(conv_block(x), x)`` — norm and skip add in one pass.
- StarGAN's affine norms (``affine=True``: a weight and bias per channel) → ``FusedAffineInstanceNorm``
  holding the norm's own ``weight`` and ``bias`` (keys unchanged): the statistics op, then the apply op
  with the weight folded into rstd and the bias as its per-row shift, ReLU fused as above; each
  ``StarGANBlock`` → ``FusedStarGANBlock``, whose last norm takes the skip add.
- any other ``InstanceNorm2d`` → ``FusedInstanceNorm(act=None)``.  That is every norm of a
  UnetGenerator: there a norm is followed by a submodule or by ``torch.cat``, never directly by its
  activation (the (Leaky)ReLUs sit at the start of the next level, across the concatenation), and
  there is no residual add, so the U-Net gains only the norm kernel itself (fp32 statistics without
  an fp32 copy of a half-precision activation).

Only norms without running statistics are swapped (what ``--norm instance`` and StarGAN build);
BatchNorm generators are returned unchanged.  The fused modules compute statistics in fp32 for
fp16/bf16 inputs, autocast or not, as engine/models/norm.py does.  Fusion is for inference: the
custom ops have no backward.
"""

from __future__ import annotations

import torch
from torch import nn

from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.models.resnet import ResnetBlock
from cyclestream.engine.models.stargan import StarGANBlock
from cyclestream.kernels import _dispatch
from cyclestream.kernels.errors import KernelError
from cyclestream.kernels.instance_norm import (
    instance_norm_act,
    instance_norm_apply,
    instance_norm_residual,
    instance_norm_stats,
)


class FusedInstanceNorm(nn.Module):
    """``act(InstanceNorm2d(x))`` through ``cyclestream::instance_norm_act``; no parameters."""

    def __init__(self, num_features: int, eps: float = 1e-5, act: str | None = None, impl: str = "auto") -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.act = act
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm_act(x, self.act, self.eps, self.impl)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, act={self.act}, impl={self.impl}"


class FusedResnetBlock(nn.Module):
    """A ResnetBlock whose last norm and skip add run as ``cyclestream::instance_norm_residual``.

    ``conv_block`` is the original block's Sequential, its final norm slot replaced by nn.Identity, so
    ``conv_block(x)`` is the pre-norm activation of the second convolution.
    """

    def __init__(self, conv_block: nn.Sequential, eps: float = 1e-5, impl: str = "auto") -> None:
        super().__init__()
        self.conv_block = conv_block
        self.eps = eps
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm_residual(self.conv_block(x), x, self.eps, self.impl)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, impl={self.impl}"


class FusedAffineInstanceNorm(nn.Module):
    """``skip + act(weight · IN(x) + bias)``: ``cyclestream::instance_norm_stats``, then
    ``cyclestream::instance_norm_apply`` with ``rstd · weight`` and ``bias`` as the shift; it holds the
    norm's own ``weight`` and ``bias`` parameters (the same state-dict keys)."""

    def __init__(self, norm: nn.InstanceNorm2d, act: str | None = None, impl: str = "auto") -> None:
        super().__init__()
        self.weight, self.bias = norm.weight, norm.bias
        self.num_features, self.eps, self.act, self.impl = norm.num_features, norm.eps, act, impl

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        mean, rstd = instance_norm_stats(x, self.eps, self.impl)
        scale = rstd * self.weight.to(rstd.dtype)
        shift = self.bias.to(rstd.dtype).expand(x.shape[0], -1)
        return instance_norm_apply(x, mean, scale, self.act, skip, self.impl, shift)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, act={self.act}, impl={self.impl}"


class FusedStarGANBlock(nn.Module):
    """A StarGANBlock whose last (affine) norm takes the skip add: ``main`` is the block's own Sequential
    (keys ``main.K.*`` unchanged) with a ``FusedAffineInstanceNorm`` in its last slot."""

    def __init__(self, main: nn.Sequential) -> None:
        super().__init__()
        self.main = main

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.main) - 1
        for i, layer in enumerate(self.main):
            h = layer(h, x) if i == last else layer(h)
        return h


def _fusable_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.InstanceNorm2d) and not module.affine and not module.track_running_stats


def _affine_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.InstanceNorm2d) and module.affine and not module.track_running_stats


def _fuse_stargan_block(block: StarGANBlock, impl: str) -> FusedStarGANBlock | None:
    tail = block.main[-1]
    if not _affine_norm(tail):
        return None
    block.main[-1] = FusedAffineInstanceNorm(tail, None, impl)
    return FusedStarGANBlock(block.main)


def _fuse_block(block: ResnetBlock, impl: str) -> FusedResnetBlock | None:
    tail = block.conv_block[-1]
    if not _fusable_norm(tail):
        return None
    block.conv_block[-1] = nn.Identity()
    return FusedResnetBlock(block.conv_block, tail.eps, impl)


def _fuse_sequential(seq: nn.Sequential, impl: str, affine: bool) -> None:
    for i, module in enumerate(seq):
        if not (_fusable_norm(module) or (affine and _affine_norm(module))):
            continue
        relu_next = i + 1 < len(seq) and type(seq[i + 1]) is nn.ReLU
        act = "relu" if relu_next else None
        if module.affine:
            seq[i] = FusedAffineInstanceNorm(module, act, impl)
        else:
            seq[i] = FusedInstanceNorm(module.num_features, module.eps, act, impl)
        if relu_next:
            seq[i + 1] = nn.Identity()


def fuse_kernels(generator: nn.Module, mode: _dispatch.Impl = "auto", *, affine: bool = True) -> nn.Module:
    """Swap ``generator``'s IN+ReLU pairs, residual tails and remaining INs for fused ops, in place.

    ``mode`` is the ops' ``impl``: ``"auto"`` (Triton on CUDA, PyTorch elsewhere), ``"triton"`` or
    ``"reference"``.  ``affine=False`` leaves StarGAN's affine norms (whose ops, statistics then a shifted
    apply, are not TensorRT plugins) as they are.  Returns ``generator``; calling it again only changes the
    mode of fused modules.
    """
    try:
        _dispatch.check_impl(mode)
    except KernelError as e:
        raise CycleStreamError(str(e)) from None
    if mode == "triton" and not _dispatch.triton_installed():
        raise CycleStreamError("fuse_kernels(mode='triton') needs Triton: pip install triton")
    for module in list(generator.modules()):
        if isinstance(module, nn.Sequential):
            for i, child in enumerate(module):
                fused: nn.Module | None = None
                if isinstance(child, ResnetBlock):
                    fused = _fuse_block(child, mode)
                elif isinstance(child, StarGANBlock) and affine:
                    fused = _fuse_stargan_block(child, mode)
                if fused is not None:
                    module[i] = fused
    for module in list(generator.modules()):
        if isinstance(module, nn.Sequential):
            _fuse_sequential(module, mode, affine)
        elif isinstance(module, (FusedInstanceNorm, FusedResnetBlock, FusedAffineInstanceNorm)):
            module.impl = mode
    return generator
