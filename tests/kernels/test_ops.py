"""The ``cyclestream::instance_norm_*`` custom ops: dispatch, fakes, errors, and import hygiene."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from types import ModuleType

import pytest
import torch

from cyclestream.kernels import (
    _dispatch,
    instance_norm_act,
    instance_norm_act_reference,
    instance_norm_apply,
    instance_norm_apply_reference,
    instance_norm_residual,
    instance_norm_residual_reference,
    instance_norm_stats,
    instance_norm_stats_reference,
)
from cyclestream.kernels import instance_norm as ops
from cyclestream.kernels.errors import KernelError
from tests.kernels.helpers import random_input, tolerance

OP_NAMES = ("instance_norm_act", "instance_norm_residual", "instance_norm_stats", "instance_norm_apply")


def test_ops_are_registered_in_the_cyclestream_namespace() -> None:
    for name in OP_NAMES:
        assert isinstance(getattr(torch.ops.cyclestream, name).default, torch._ops.OpOverload)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
def test_triton_impl_through_the_ops_matches_reference(
    triton_kernels: ModuleType, dtype: torch.dtype, channels_last: bool
) -> None:
    x = random_input((2, 6, 9, 11), dtype, seed=20, channels_last=channels_last)
    skip = random_input((2, 6, 9, 11), dtype, seed=21, channels_last=channels_last)
    tol = tolerance(dtype)
    for act in (None, "relu"):
        got = instance_norm_act(x, act, impl="triton")
        torch.testing.assert_close(got, instance_norm_act_reference(x, act), **tol)
        assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    got = instance_norm_residual(x, skip, impl="triton")
    torch.testing.assert_close(got, instance_norm_residual_reference(x, skip), **tol)
    mean, rstd = instance_norm_stats(x, impl="triton")
    ref_mean, ref_rstd = instance_norm_stats_reference(x)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rstd, ref_rstd, rtol=1e-5, atol=1e-5)
    got = instance_norm_apply(x, mean * 0.5, rstd * 2, "relu", skip, impl="triton")
    torch.testing.assert_close(got, instance_norm_apply_reference(x, mean * 0.5, rstd * 2, "relu", skip), **tol)


def test_stats_then_apply_equals_the_fused_op() -> None:
    """The seam for outside statistics: stats + apply is the fused op, in the reference too."""
    x = random_input((2, 4, 5, 7), seed=22)
    skip = random_input((2, 4, 5, 7), seed=23)
    mean, rstd = instance_norm_stats(x, impl="reference")
    torch.testing.assert_close(instance_norm_apply(x, mean, rstd, "relu"), instance_norm_act(x, "relu"))
    torch.testing.assert_close(instance_norm_apply(x, mean, rstd, None, skip), instance_norm_residual(x, skip))
    expected = torch.nn.functional.instance_norm(x, eps=1e-5)
    torch.testing.assert_close(instance_norm_act(x, None, impl="reference"), expected, rtol=1e-5, atol=1e-5)


def _op_cases() -> list[tuple[Callable[..., object], tuple[object, ...]]]:
    x = random_input((1, 3, 5, 6), seed=24)
    skip = random_input((1, 3, 5, 6), seed=25)
    mean, rstd = torch.randn(1, 3), torch.rand(1, 3) + 0.5
    return [
        (torch.ops.cyclestream.instance_norm_act.default, (x, "relu", 1e-5)),
        (torch.ops.cyclestream.instance_norm_residual.default, (x, skip, 1e-5)),
        (torch.ops.cyclestream.instance_norm_stats.default, (x, 1e-5)),
        (torch.ops.cyclestream.instance_norm_apply.default, (x, mean, rstd, "relu", skip)),
        (torch.ops.cyclestream.instance_norm_apply.default, (x, mean, rstd, "none", None)),
    ]


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_opcheck_schema_and_fake_tensors(request: pytest.FixtureRequest, impl: str) -> None:
    """torch.library.opcheck: schema, fake (meta) implementation and AOT dispatch agree with the op."""
    if impl == "triton":
        request.getfixturevalue("triton_kernels")
    for op, args in _op_cases():
        torch.library.opcheck(op, (*args, impl))


def test_auto_on_cpu_never_runs_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with TRITON_INTERPRET=1 (set by conftest), auto keeps CPU tensors on the reference."""
    def fail() -> ModuleType:
        raise AssertionError("Triton path taken")

    monkeypatch.setattr(ops, "load_triton_kernels", fail)
    x = random_input((1, 2, 3, 4), seed=26)
    torch.testing.assert_close(instance_norm_act(x, "relu", impl="auto"), instance_norm_act_reference(x, "relu"))
    expected = (AssertionError, "Triton path taken") if _dispatch.triton_installed() else (KernelError, "pip")
    with pytest.raises(expected[0], match=expected[1]):  # the patch is where "triton" would go
        instance_norm_act(x, "relu", impl="triton")


def test_missing_triton_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from cyclestream.engine.errors import CycleStreamError
    from cyclestream.engine.models import GeneratorSpec, build_generator
    from cyclestream.engine.models.fuse import fuse_kernels

    monkeypatch.setattr(_dispatch, "triton_installed", lambda: False)
    x = random_input((1, 2, 3, 4), seed=27)
    with pytest.raises(KernelError, match="pip install triton"):
        instance_norm_act(x, impl="triton")
    with pytest.raises(KernelError, match="pip install triton"):
        _dispatch.load_triton_kernels()
    with pytest.raises(CycleStreamError, match="pip install triton"):  # the engine's error, from the fusion
        fuse_kernels(build_generator(GeneratorSpec(ngf=2, n_blocks=1)), mode="triton")
    instance_norm_act(x, impl="auto")  # auto falls back to the reference without complaint


def test_cpu_triton_without_the_interpreter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if not _dispatch.triton_installed():
        pytest.skip("triton is not installed")
    with pytest.raises(KernelError, match="TRITON_INTERPRET=1"):
        instance_norm_act(random_input((1, 2, 3, 4)), impl="triton")


def test_bad_arguments_are_clear_errors() -> None:
    x = random_input((1, 2, 3, 4), seed=28)
    with pytest.raises(KernelError, match="implementation"):
        instance_norm_act(x, impl="cuda")
    with pytest.raises(KernelError, match="activation"):
        instance_norm_act(x, "gelu")
    with pytest.raises(KernelError, match="N×C×H×W"):
        instance_norm_act(x[0])
    with pytest.raises(KernelError, match="N×C"):
        instance_norm_apply(x, torch.zeros(3), torch.ones(3))
    with pytest.raises(KernelError, match="skip"):
        instance_norm_residual(x, x[:, :, :1, :1])  # no broadcasting, whichever the implementation
    with pytest.raises(KernelError, match="float32"):
        instance_norm_act(x.double(), impl="triton")


@pytest.mark.slow
def test_importing_the_package_does_not_import_triton() -> None:
    """Import and fusion import no Triton; a reference call does not load our Triton module.

    (The first call of any custom op imports torch._dynamo, which itself imports triton when it is
    installed; that is torch's doing and costs nothing at ``import cyclestream``.)
    """
    code = (
        "import sys, torch\n"
        "import cyclestream.kernels as k\n"
        "from cyclestream.engine.models.fuse import fuse_kernels\n"
        "fuse_kernels(torch.nn.Sequential(torch.nn.InstanceNorm2d(2), torch.nn.ReLU()))\n"
        "assert 'triton' not in sys.modules, 'import or fusion imported triton'\n"
        "k.instance_norm_act(torch.randn(1, 2, 3, 4), 'relu')\n"
        "assert 'cyclestream.kernels.instance_norm_triton' not in sys.modules, 'kernels loaded'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
