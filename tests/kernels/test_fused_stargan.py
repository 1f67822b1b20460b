"""StarGAN's affine instance norms on the fused ops: the apply kernel's per-row shift against the
reference, the reference against torch's own affine ``InstanceNorm2d``, and a fused StarGAN generator
against the unfused one (same keys, same output) with the reference ops and the Triton kernels."""

from __future__ import annotations

import copy
from types import ModuleType

import pytest
import torch
from torch import nn

from cyclestream.engine.models import build_generator
from cyclestream.engine.models.fuse import FusedAffineInstanceNorm, FusedStarGANBlock, fuse_kernels
from cyclestream.engine.models.stargan import StarGANSpec
from cyclestream.kernels.instance_norm import instance_norm_apply_reference, instance_norm_stats_reference
from tests.kernels.helpers import random_input, tolerance
from tests.kernels.test_instance_norm_triton import BIG, CASES, SMALL, Case, plan_of, poisoned_like


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if c.shape in (SMALL, BIG) and not c.heavy], ids=str)
def test_apply_adds_the_shift_before_the_activation(triton_kernels: ModuleType, case: Case, dtype: torch.dtype) -> None:
    x = random_input(case.shape, dtype, seed=7, channels_last=case.channels_last)
    skip = random_input(case.shape, dtype, seed=8, channels_last=case.channels_last)
    g = torch.Generator().manual_seed(9)
    mean, rstd = torch.randn(case.shape[:2], generator=g), 0.1 + torch.rand(case.shape[:2], generator=g)
    shift = torch.randn(case.shape[:2], generator=g)
    out = poisoned_like(x)
    y = triton_kernels.apply(x, mean, rstd, "relu", skip, shift=shift, plan=plan_of(triton_kernels, x, case), out=out)
    assert y is out
    expected = instance_norm_apply_reference(x, mean, rstd, "relu", skip, shift)
    torch.testing.assert_close(y, expected, **tolerance(dtype))
    assert not torch.allclose(expected, instance_norm_apply_reference(x, mean, rstd, "relu", skip))  # it counts


def test_the_reference_with_weight_and_shift_is_torchs_affine_norm() -> None:
    norm = nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
        norm.bias.copy_(torch.randn(6))
    x = torch.randn(2, 6, 9, 11) * 3 + 1
    mean, rstd = instance_norm_stats_reference(x)
    weight, bias = norm.weight.detach(), norm.bias.detach()
    mine = instance_norm_apply_reference(x, mean, rstd * weight, "relu", None, bias.expand(2, -1))
    torch.testing.assert_close(mine, torch.relu(norm(x)).detach(), rtol=1e-5, atol=1e-5)


def stargan() -> nn.Module:
    torch.manual_seed(0)
    g = build_generator(StarGANSpec(c_dim=3, ngf=8, repeat_num=2))
    with torch.no_grad():  # weights and biases away from the init's 1 and 0, so a lost term shows
        for m in g.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.copy_(0.5 + torch.rand_like(m.weight))
                m.bias.copy_(0.5 * torch.randn_like(m.bias))
    return g.eval()


def check_fused(impl: str) -> None:
    plain = stargan()
    fused = fuse_kernels(copy.deepcopy(plain), impl)  # type: ignore[arg-type]
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in fused.modules())  # every norm: 5 + 2 per block + 2
    assert sum(isinstance(m, FusedAffineInstanceNorm) for m in fused.modules()) == 5 + 2 * 2
    assert sum(isinstance(m, FusedStarGANBlock) for m in fused.modules()) == 2
    assert list(fused.state_dict()) == list(plain.state_dict())  # the published keys, unchanged
    x, label = torch.rand(2, 3, 24, 20) * 2 - 1, torch.eye(3)[[0, 2]]
    with torch.no_grad():
        torch.testing.assert_close(fused(x, label), plain(x, label), rtol=1e-4, atol=1e-5)


def test_a_fused_stargan_matches_the_unfused_one_with_the_reference_ops() -> None:
    check_fused("reference")


def test_a_fused_stargan_matches_the_unfused_one_with_the_triton_kernels(triton_kernels: ModuleType) -> None:
    check_fused("triton")
