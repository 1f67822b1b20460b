"""The Triton kernels (under the CPU interpreter) against the PyTorch references, launcher by launcher.

Every output buffer is filled with NaN first, so an element the kernel fails to write fails the test.
Split-path cases assert that their rows really span several tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
import torch

from cyclestream.kernels.errors import KernelError
from cyclestream.kernels.instance_norm import (
    instance_norm_act_reference,
    instance_norm_apply_reference,
    instance_norm_residual_reference,
    instance_norm_stats_reference,
)
from tests.kernels.helpers import random_input, tolerance

EPS = 1e-5
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@dataclass(frozen=True)
class Case:
    """A shape, a memory layout, the launch plan to force (None: the default heuristic), and whether
    the plan must split rows into several tiles.  ``heavy`` cases (over 50 interpreter programs) run
    in fp32 only."""

    shape: tuple[int, int, int, int]
    channels_last: bool = False
    plan: dict[str, int] | None = None
    split: bool = False
    heavy: bool = False

    def __str__(self) -> str:
        layout = "cl" if self.channels_last else "nchw"
        plan = "default" if self.plan is None else "-".join(f"{k}{v}" for k, v in self.plan.items())
        return f"{'x'.join(map(str, self.shape))}-{layout}-{plan}"


SMALL, BIG, POINTS, LONG = (1, 3, 7, 13), (2, 64, 33, 47), (2, 5, 1, 1), (1, 2, 131, 131)

CASES = [
    Case(SMALL),
    Case(SMALL, channels_last=True),
    Case(SMALL, plan={"row_max": 0, "tile": 16, "block_c": 1}, split=True),
    Case(SMALL, channels_last=True, plan={"row_max": 0, "tile": 16}, split=True),
    Case(POINTS),  # rows of length 1
    Case(POINTS, channels_last=True),
    Case(POINTS, plan={"row_max": 0, "tile": 1, "block_c": 1}),
    Case(BIG, heavy=True),  # the default: one program per row, 128 programs
    Case(BIG, channels_last=True, heavy=True),  # 8-channel runs × 2048 = ROW_MAX: single pass
    Case(BIG, plan={"row_max": 32768, "block_c": 16}),
    Case(BIG, plan={"row_max": 0, "tile": 16384, "block_c": 16}, split=True),
    Case(BIG, channels_last=True, plan={"row_max": 0, "tile": 16384}, split=True),
    Case(LONG, split=True),  # 17,161 elements per row > ROW_MAX: split by default
]
SMALL_CASES = [c for c in CASES if c.shape in (SMALL, POINTS)]
CASE_DTYPES = [
    pytest.param(case, dtype, id=f"{case}-{str(dtype).removeprefix('torch.')}")
    for case in CASES
    for dtype in ([torch.float32] if case.heavy else DTYPES)
]


def plan_of(tk: ModuleType, x: torch.Tensor, case: Case) -> Any:
    plan = tk.plan_for(tk.layout_of(x), **(case.plan or {}))
    if case.split:
        assert not plan.single_pass and plan.n_tiles > 1
    return plan


def poisoned_like(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.full_like(x, float("nan"), dtype=dtype)  # keeps x's memory format


def check_stats(mean: torch.Tensor, rstd: torch.Tensor, x: torch.Tensor) -> None:
    ref_mean, ref_rstd = instance_norm_stats_reference(x, EPS)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rstd, ref_rstd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("case", "dtype"), CASE_DTYPES)
def test_normalize_relu_matches_reference(triton_kernels: ModuleType, case: Case, dtype: torch.dtype) -> None:
    x = random_input(case.shape, dtype, seed=1, channels_last=case.channels_last)
    out = poisoned_like(x)
    y, mean, rstd = triton_kernels.normalize(x, EPS, "relu", plan=plan_of(triton_kernels, x, case), out=out)
    assert y is out
    torch.testing.assert_close(y, instance_norm_act_reference(x, "relu", EPS), **tolerance(dtype))
    assert (y >= 0).all()
    check_stats(mean, rstd, x)


@pytest.mark.parametrize(("case", "dtype"), CASE_DTYPES)
def test_normalize_residual_matches_reference(triton_kernels: ModuleType, case: Case, dtype: torch.dtype) -> None:
    x = random_input(case.shape, dtype, seed=2, channels_last=case.channels_last)
    skip = random_input(case.shape, dtype, seed=3, channels_last=case.channels_last)
    out = poisoned_like(x)
    y, _, _ = triton_kernels.normalize(x, EPS, "none", skip, plan=plan_of(triton_kernels, x, case), out=out)
    assert y is out
    torch.testing.assert_close(y, instance_norm_residual_reference(x, skip, EPS), **tolerance(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", SMALL_CASES, ids=str)
def test_normalize_without_activation(triton_kernels: ModuleType, case: Case, dtype: torch.dtype) -> None:
    x = random_input(case.shape, dtype, seed=4, channels_last=case.channels_last)
    out = poisoned_like(x)
    y, _, _ = triton_kernels.normalize(x, EPS, "none", plan=plan_of(triton_kernels, x, case), out=out)
    torch.testing.assert_close(y, instance_norm_act_reference(x, None, EPS), **tolerance(dtype))
    if x.shape[2] * x.shape[3] > 1:
        assert (y < 0).any()  # no ReLU crept in


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if not c.heavy], ids=str)
def test_stats_match_reference(triton_kernels: ModuleType, case: Case, dtype: torch.dtype) -> None:
    x = random_input(case.shape, dtype, seed=5, channels_last=case.channels_last)
    mean, rstd = triton_kernels.stats(x, EPS, plan=plan_of(triton_kernels, x, case))
    assert mean.shape == rstd.shape == case.shape[:2] and mean.dtype == torch.float32
    check_stats(mean, rstd, x)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
def test_partial_stats_per_tile(triton_kernels: ModuleType, channels_last: bool) -> None:
    x = random_input(SMALL, seed=6, channels_last=channels_last)
    plan = triton_kernels.plan_for(triton_kernels.layout_of(x), row_max=0, tile=16)
    rows, hw = SMALL[0] * SMALL[1], SMALL[2] * SMALL[3]
    buffers = tuple(torch.full((rows, plan.n_tiles), float("nan")) for _ in range(3))
    count, mean, m2 = triton_kernels.partial_stats(x, plan, out=buffers)
    assert plan.n_tiles == -(-hw // plan.block_hw) > 1
    flat = x.reshape(rows, hw).double()
    for t, chunk in enumerate(flat.split(plan.block_hw, dim=1)):
        torch.testing.assert_close(count[:, t], torch.full((rows,), float(chunk.shape[1])))
        chunk_mean = chunk.mean(dim=1)
        torch.testing.assert_close(mean[:, t].double(), chunk_mean, rtol=1e-5, atol=1e-5)
        chunk_m2 = ((chunk - chunk_mean[:, None]) ** 2).sum(dim=1)
        torch.testing.assert_close(m2[:, t].double(), chunk_m2, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if c.shape in (SMALL, BIG) and not c.heavy], ids=str)
def test_apply_given_statistics(triton_kernels: ModuleType, case: Case, dtype: torch.dtype) -> None:
    """Statistics from outside (here: unrelated to x) are applied as given, with ReLU and skip."""
    x = random_input(case.shape, dtype, seed=7, channels_last=case.channels_last)
    skip = random_input(case.shape, dtype, seed=8, channels_last=case.channels_last)
    g = torch.Generator().manual_seed(9)
    mean = torch.randn(case.shape[:2], generator=g)
    rstd = 0.1 + torch.rand(case.shape[:2], generator=g)
    out = poisoned_like(x)
    y = triton_kernels.apply(x, mean, rstd, "relu", skip, plan=plan_of(triton_kernels, x, case), out=out)
    assert y is out
    torch.testing.assert_close(y, instance_norm_apply_reference(x, mean, rstd, "relu", skip), **tolerance(dtype))


@pytest.mark.parametrize("plan", [None, {"row_max": 0, "tile": 256}], ids=["single", "split"])
def test_large_offset_is_numerically_stable(triton_kernels: ModuleType, plan: dict[str, int] | None) -> None:
    """Rows at 1e4 ± 1: E[x²] − E[x]² in fp32 would lose the variance entirely; two-pass/Chan keep it."""
    g = torch.Generator().manual_seed(10)
    x = 1e4 + torch.randn(1, 3, 33, 47, generator=g)
    p = triton_kernels.plan_for(triton_kernels.layout_of(x), **(plan or {}))
    y, _, _ = triton_kernels.normalize(x, EPS, "none", plan=p)
    xd = x.double()
    var, mean = torch.var_mean(xd, dim=(2, 3), correction=0, keepdim=True)
    expected = (xd - mean) / torch.sqrt(var + EPS)
    torch.testing.assert_close(y.double(), expected, rtol=0, atol=1e-2)
    naive_var = (x * x).mean(dim=(2, 3)) - x.mean(dim=(2, 3)) ** 2  # what the test guards against
    assert ((naive_var - var.flatten(1).float()).abs() > 0.1).any()


def test_non_contiguous_input_is_made_dense(triton_kernels: ModuleType) -> None:
    x = random_input((1, 4, 9, 22), seed=11)[:, :, :, ::2]
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    y, _, _ = triton_kernels.normalize(x, EPS, "relu")
    torch.testing.assert_close(y, instance_norm_act_reference(x, "relu", EPS), rtol=1e-5, atol=1e-5)


def test_skip_in_another_layout_and_dtype(triton_kernels: ModuleType) -> None:
    """An fp32 NCHW skip with a bf16 channels_last input: result promotes to fp32, as ``+`` does."""
    x = random_input(SMALL, torch.bfloat16, seed=12, channels_last=True)
    skip = random_input(SMALL, torch.float32, seed=13)
    y, _, _ = triton_kernels.normalize(x, EPS, "none", skip)
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, instance_norm_residual_reference(x, skip, EPS), rtol=1e-2, atol=1e-2)


def test_plan_heuristic_for_generator_trunks(triton_kernels: ModuleType) -> None:
    tk = triton_kernels
    for side in (64, 128):  # 256² and 512² frames: one program per row, whole row in registers
        plan = tk.plan_for(tk.Layout(1, 256, side * side, 256 * side * side, side * side, 1))
        assert plan.single_pass and plan.block_c == 1 and plan.n_tiles == 1
    hd = tk.Layout(1, 256, 270 * 480, 256 * 270 * 480, 270 * 480, 1)  # 1080p trunk
    plan = tk.plan_for(hd)
    assert not plan.single_pass and plan.n_tiles == 32
    assert 256 * plan.n_tiles >= 8192  # programs on the (row, tile) grid
    cl = tk.plan_for(tk.Layout(1, 256, 270 * 480, 256 * 270 * 480, 1, 256))
    assert cl.block_c == 32 and not cl.single_pass
    # channels_last 256² trunk (64²): single pass, 4-channel runs (32 channels × 4096 would not fit)
    cl256 = tk.plan_for(tk.Layout(1, 256, 64 * 64, 256 * 64 * 64, 1, 256))
    assert cl256.single_pass and cl256.block_c == 4 and cl256.block_c * cl256.block_hw <= tk.ROW_MAX
    # channels_last 512² trunk (128²): one channel would fit, but strided single loads lose to the split
    cl512 = tk.plan_for(tk.Layout(1, 256, 128 * 128, 256 * 128 * 128, 1, 256))
    assert not cl512.single_pass and cl512.block_c == 32
    # short channels_last rows: up to 32 channels per program in one pass
    short = tk.plan_for(tk.Layout(2, 64, 16 * 16, 64 * 256, 1, 64))
    assert short.single_pass and short.block_c == 32
    huge = tk.plan_for(tk.Layout(1, 8, 4000 * 4000, 8 * 4000 * 4000, 4000 * 4000, 1))
    assert huge.n_tiles <= tk.MAX_TILES and huge.n_tiles * huge.block_hw >= 4000 * 4000


def test_rejects_what_it_cannot_run(triton_kernels: ModuleType) -> None:
    tk = triton_kernels
    x = random_input(SMALL, seed=14)
    with pytest.raises(KernelError, match="float32"):
        tk.normalize(x.double(), EPS)
    with pytest.raises(KernelError, match="N×C×H×W"):
        tk.normalize(x[0], EPS)
    with pytest.raises(KernelError, match="skip"):
        tk.normalize(x, EPS, "none", x[:, :2])
    with pytest.raises(KernelError, match="activation"):
        tk.normalize(x, EPS, "gelu")
    with pytest.raises(KernelError, match="out"):
        tk.normalize(x, EPS, out=torch.empty_like(x).contiguous(memory_format=torch.channels_last))
    with pytest.raises(KernelError, match="N×C"):
        tk.apply(x, torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="power of two"):
        tk.plan_for(tk.layout_of(x), tile=100)
