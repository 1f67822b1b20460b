"""fuse_kernels on real generators: same outputs, same state-dict keys, traceable by compile/export."""

from __future__ import annotations

import copy
from types import ModuleType

import pytest
import torch
from torch import nn

from cyclestream.engine.models import GeneratorSpec, build_generator
from cyclestream.engine.models.fuse import FusedInstanceNorm, FusedResnetBlock, fuse_kernels
from cyclestream.engine.models.resnet import ResnetBlock
from tests.kernels.helpers import random_input

SPEC = GeneratorSpec(ngf=4, n_blocks=2)
FRAME = (1, 3, 20, 24)


def generator(spec: GeneratorSpec = SPEC, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_generator(spec).eval()


def fused_pair(spec: GeneratorSpec = SPEC, mode: str = "reference") -> tuple[nn.Module, nn.Module]:
    plain = generator(spec)
    return plain, fuse_kernels(copy.deepcopy(plain), mode)


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_resnet_structure_after_fusion() -> None:
    plain, fused = fused_pair()
    assert count(fused, nn.InstanceNorm2d) == 0 and count(fused, ResnetBlock) == 0
    assert count(fused, FusedResnetBlock) == SPEC.n_blocks
    # stem + 2 down + 1 per block + 2 up, each IN+ReLU → one fused module and an Identity slot
    norms = [m for m in fused.modules() if isinstance(m, FusedInstanceNorm)]
    assert len(norms) == 5 + SPEC.n_blocks and all(m.act == "relu" for m in norms)
    assert count(fused, nn.ReLU) == 0
    assert len(fused.model) == len(plain.model)
    assert list(fused.state_dict()) == list(plain.state_dict())


def test_fused_generator_loads_the_unfused_state_dict() -> None:
    _, fused = fused_pair()
    other = generator(seed=1)
    fused.load_state_dict(other.state_dict(), strict=True)
    x = random_input(FRAME, seed=30)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), other(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "spec",
    [SPEC, GeneratorSpec(ngf=4, n_blocks=1, use_dropout=True), GeneratorSpec(ngf=4, n_blocks=2, padding_type="zero")],
    ids=["reflect", "dropout", "zero-pad"],
)
def test_reference_mode_matches_unfused(spec: GeneratorSpec) -> None:
    plain, fused = fused_pair(spec)
    x = random_input(FRAME, seed=31)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
def test_triton_mode_matches_unfused(triton_kernels: ModuleType, channels_last: bool) -> None:
    plain, fused = fused_pair(mode="triton")
    x = random_input(FRAME, seed=32, channels_last=channels_last)
    if channels_last:
        plain, fused = plain.to(memory_format=torch.channels_last), fused.to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = plain(x)
        torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)
        fuse_kernels(fused, "reference")  # switching mode reaches every fused module
        assert {m.impl for m in fused.modules() if hasattr(m, "impl")} == {"reference"}
        torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["reference", "triton"])
def test_bf16_autocast_matches_unfused(request: pytest.FixtureRequest, mode: str) -> None:
    if mode == "triton":
        request.getfixturevalue("triton_kernels")
    plain, fused = fused_pair(mode=mode)
    x = random_input(FRAME, seed=33)
    with torch.no_grad():
        exact = plain(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected, got = plain(x), fused(x)
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got.float(), expected.float(), rtol=5e-2, atol=5e-2)
    # bf16 rounding differs (the fused tail rounds once, not twice), but no more error than unfused
    fused_error = (got.float() - exact).abs().mean()
    plain_error = (expected.float() - exact).abs().mean()
    assert fused_error <= 1.25 * plain_error + 1e-3


@pytest.mark.parametrize("mode", ["reference", "triton"])
def test_fused_norm_keeps_fp32_statistics_under_autocast(request: pytest.FixtureRequest, mode: str) -> None:
    """bf16 rows with a large mean: bf16 statistics would be far off; fp32 ones are exact to bf16 output."""
    if mode == "triton":
        request.getfixturevalue("triton_kernels")
    g = torch.Generator().manual_seed(34)
    x = (100 + 4 * torch.randn(1, 4, 48, 64, generator=g)).to(torch.bfloat16)
    norm = FusedInstanceNorm(4, act="relu", impl=mode)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = norm(x)
    assert got.dtype == torch.bfloat16
    xd = x.double()
    var, mean = torch.var_mean(xd, dim=(2, 3), correction=0, keepdim=True)
    expected = torch.relu((xd - mean) / torch.sqrt(var + 1e-5))
    torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-2)
    acc = torch.zeros(1, 4, dtype=torch.bfloat16)  # what fp32 avoids: a running sum kept in bf16
    for value in x.flatten(2).unbind(-1):
        acc = acc + value
    assert ((acc.double() / x[0, 0].numel() - mean.flatten(1)).abs() > var.sqrt().flatten(1)).all()


def test_unet_norms_are_swapped_without_activation() -> None:
    spec = GeneratorSpec(kind="unet", ngf=4, n_blocks=5)
    plain, fused = fused_pair(spec)
    assert count(plain, nn.InstanceNorm2d) > 0 and count(fused, nn.InstanceNorm2d) == 0
    norms = [m for m in fused.modules() if isinstance(m, FusedInstanceNorm)]
    assert len(norms) == count(plain, nn.InstanceNorm2d) and all(m.act is None for m in norms)
    assert count(fused, nn.ReLU) == count(plain, nn.ReLU)
    assert list(fused.state_dict()) == list(plain.state_dict())
    x = random_input((1, 3, 32, 32), seed=35)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-5)


def test_batchnorm_generator_is_left_alone() -> None:
    _, fused = fused_pair(GeneratorSpec(ngf=4, n_blocks=1, norm="batch"))
    assert count(fused, FusedInstanceNorm) == 0 and count(fused, FusedResnetBlock) == 0
    assert count(fused, ResnetBlock) == 1


def test_fusing_twice_changes_nothing_but_the_mode() -> None:
    _, fused = fused_pair()
    before = repr(fused)
    fuse_kernels(fused, "reference")
    assert repr(fused) == before
    fuse_kernels(fused, "auto")
    assert {m.impl for m in fused.modules() if hasattr(m, "impl")} == {"auto"}


def test_torch_export_keeps_the_custom_ops() -> None:
    plain, fused = fused_pair()
    x = random_input(FRAME, seed=36)
    exported = torch.export.export(fused, (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "cyclestream.instance_norm_act.default" in targets
    assert "cyclestream.instance_norm_residual.default" in targets
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), plain(x), rtol=1e-5, atol=1e-5)


def test_torch_compile_traces_the_fused_generator() -> None:
    plain, fused = fused_pair()
    x = random_input(FRAME, seed=37)
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), plain(x), rtol=1e-5, atol=1e-5)
