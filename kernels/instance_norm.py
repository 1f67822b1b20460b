"""Fused instance norm ops: PyTorch references, the custom ops, and the dispatch to Triton.

Instance norm here is ``nn.InstanceNorm2d(affine=False)`` as the generators use it: per (n, c) row
over H×W, biased variance, ``rstd = 1/sqrt(var + eps)``; statistics in fp32 for fp32/fp16/bf16 inputs,
output in the input's dtype.  Four ops, each a ``torch.library.custom_op`` in the ``cyclestream``
namespace (so torch.compile and torch.export see one opaque node, shaped by its fake):

- ``instance_norm_act(x, act, eps)`` — ``act(IN(x))``, act ``None`` or ``"relu"``;
- ``instance_norm_residual(x, skip, eps)`` — ``skip + IN(x)``, the tail of a ResnetBlock;
- ``instance_norm_stats(x, eps) -> (mean, rstd)`` and
  ``instance_norm_apply(x, mean, rstd, act, skip, shift)`` — the same split in two, the seam for
  statistics that come from elsewhere (temporal smoothing across video frames) and for affine norms
  (StarGAN's: the weight folded into rstd, the bias as the per-row ``shift``).

Each op runs the Triton kernels (instance_norm_triton.py) or the ``*_reference`` function beside it,
as ``impl`` says (see _dispatch.py); the references define what the kernels must equal.
"""

from __future__ import annotations

import torch

from cyclestream.kernels._dispatch import Impl, load_triton_kernels, use_triton
from cyclestream.kernels.errors import KernelError

ACTS: tuple[str, ...] = ("none", "relu")


def _check(x: torch.Tensor, act: str = "none") -> None:
    if x.dim() != 4:
        raise KernelError(f"instance norm takes N×C×H×W tensors, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise KernelError(f"instance norm takes floating-point tensors, got {x.dtype}")
    if act not in ACTS:
        raise KernelError(f"unknown activation {act!r} (expected None or 'relu')")


def _check_stats(x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, shift: torch.Tensor | None = None) -> None:
    rows = x.shape[0] * x.shape[1]
    if mean.numel() != rows or rstd.numel() != rows:
        raise KernelError(
            f"mean and rstd need N×C = {rows} values each, got {mean.numel()} and {rstd.numel()}"
        )
    if shift is not None and shift.numel() != rows:
        raise KernelError(f"shift needs N×C = {rows} values, got {shift.numel()}")


def _check_skip(x: torch.Tensor, skip: torch.Tensor | None) -> None:
    if skip is not None and skip.shape != x.shape:
        raise KernelError(f"skip must have the input's shape {tuple(x.shape)}, got {tuple(skip.shape)}")


def _act_name(act: str | None) -> str:
    return "none" if act is None else act


def _stats_shape(x: torch.Tensor) -> tuple[int, int]:
    return x.shape[0], x.shape[1]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 for fp32/fp16/bf16 (fp64 stays fp64): the dtype statistics and arithmetic use."""
    return torch.promote_types(x.dtype, torch.float32)


# ----------------------------------------------------------------------------------------------------
# References: what the kernels must equal.


def instance_norm_stats_reference(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and rstd of each (n, c) row over H×W, shape [N, C], fp32 (fp64 for fp64 input)."""
    with torch.autocast(x.device.type, enabled=False):
        var, mean = torch.var_mean(x.to(_compute_dtype(x)), dim=(2, 3), correction=0)
        return mean, torch.rsqrt(var + eps)


def instance_norm_apply_reference(
    x: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    act: str | None = None,
    skip: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """``skip + act((x - mean) * rstd + shift)``; mean, rstd and shift hold N·C values (an affine norm's
    weight folds into rstd, its bias is the shift).

    Arithmetic in fp32 (fp64 for fp64 tensors), rounded once to the output dtype: ``x.dtype``, or with
    a skip the promotion of ``x.dtype`` and ``skip.dtype`` (what ``skip + y`` gives).  The unfused
    block rounds twice (the norm's output, then the sum), so in fp16/bf16 it differs by an ulp.
    """
    n, c = _stats_shape(x)
    out_dtype = x.dtype if skip is None else torch.promote_types(x.dtype, skip.dtype)
    dtype = torch.promote_types(out_dtype, torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        mean = mean.to(device=x.device, dtype=dtype).reshape(n, c, 1, 1)
        rstd = rstd.to(device=x.device, dtype=dtype).reshape(n, c, 1, 1)
        y = (x.to(dtype) - mean) * rstd
        if shift is not None:
            y = y + shift.to(device=x.device, dtype=dtype).reshape(n, c, 1, 1)
        if act == "relu":
            y = torch.relu(y)
        if skip is not None:
            y = y + skip.to(dtype)
        return y.to(out_dtype)


def instance_norm_act_reference(x: torch.Tensor, act: str | None = None, eps: float = 1e-5) -> torch.Tensor:
    """``act(IN(x))`` in the input's dtype, statistics in fp32."""
    mean, rstd = instance_norm_stats_reference(x, eps)
    return instance_norm_apply_reference(x, mean, rstd, act)


def instance_norm_residual_reference(x: torch.Tensor, skip: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``skip + IN(x)`` in fp32, rounded once to the promotion of ``x.dtype`` and ``skip.dtype``."""
    mean, rstd = instance_norm_stats_reference(x, eps)
    return instance_norm_apply_reference(x, mean, rstd, None, skip)


# ----------------------------------------------------------------------------------------------------
# Custom ops.  ``impl`` is a string argument so an exported graph keeps the choice; "auto" resolves
# per call on the tensor's device.


@torch.library.custom_op("cyclestream::instance_norm_stats", mutates_args=())
def _stats_op(x: torch.Tensor, eps: float, impl: str) -> tuple[torch.Tensor, torch.Tensor]:
    _check(x)
    if use_triton(x, impl):
        return load_triton_kernels().stats(x, eps)
    return instance_norm_stats_reference(x, eps)


@_stats_op.register_fake
def _(x: torch.Tensor, eps: float, impl: str) -> tuple[torch.Tensor, torch.Tensor]:
    _check(x)
    shape, dtype = _stats_shape(x), _compute_dtype(x)
    return x.new_empty(shape, dtype=dtype), x.new_empty(shape, dtype=dtype)


@torch.library.custom_op("cyclestream::instance_norm_apply", mutates_args=())
def _apply_op(
    x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, act: str, skip: torch.Tensor | None, impl: str,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    _check(x, act)
    _check_stats(x, mean, rstd, shift)
    _check_skip(x, skip)
    if use_triton(x, impl):
        return load_triton_kernels().apply(x, mean, rstd, act, skip, shift=shift)
    return instance_norm_apply_reference(x, mean, rstd, act, skip, shift)


@_apply_op.register_fake
def _(
    x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, act: str, skip: torch.Tensor | None, impl: str,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    _check(x, act)
    _check_stats(x, mean, rstd, shift)
    _check_skip(x, skip)
    return _fake_output(x, skip)


@torch.library.custom_op("cyclestream::instance_norm_act", mutates_args=())
def _act_op(x: torch.Tensor, act: str, eps: float, impl: str) -> torch.Tensor:
    _check(x, act)
    if use_triton(x, impl):
        return load_triton_kernels().normalize(x, eps, act)[0]
    return instance_norm_act_reference(x, act, eps)


@_act_op.register_fake
def _(x: torch.Tensor, act: str, eps: float, impl: str) -> torch.Tensor:
    _check(x, act)
    return _fake_output(x, None)


@torch.library.custom_op("cyclestream::instance_norm_residual", mutates_args=())
def _residual_op(x: torch.Tensor, skip: torch.Tensor, eps: float, impl: str) -> torch.Tensor:
    _check(x)
    _check_skip(x, skip)
    if use_triton(x, impl):
        return load_triton_kernels().normalize(x, eps, "none", skip)[0]
    return instance_norm_residual_reference(x, skip, eps)


@_residual_op.register_fake
def _(x: torch.Tensor, skip: torch.Tensor, eps: float, impl: str) -> torch.Tensor:
    _check(x)
    _check_skip(x, skip)
    return _fake_output(x, skip)


def _fake_output(x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    dtype = x.dtype if skip is None else torch.promote_types(x.dtype, skip.dtype)
    return torch.empty_like(x, dtype=dtype)


# ----------------------------------------------------------------------------------------------------
# Public functions.


def instance_norm_act(
    x: torch.Tensor, act: str | None = None, eps: float = 1e-5, impl: Impl = "auto"
) -> torch.Tensor:
    """``act(IN(x))`` for an N×C×H×W tensor; ``act`` is None or ``"relu"``; output in ``x.dtype``."""
    return _act_op(x, _act_name(act), eps, impl)


def instance_norm_residual(
    x: torch.Tensor, skip: torch.Tensor, eps: float = 1e-5, impl: Impl = "auto"
) -> torch.Tensor:
    """``skip + IN(x)`` in one pass over the output (the tail of a ResnetBlock)."""
    return _residual_op(x, skip, eps, impl)


def instance_norm_stats(
    x: torch.Tensor, eps: float = 1e-5, impl: Impl = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(n, c) mean and rstd = 1/sqrt(var + eps) over H×W, each [N, C], fp32 (fp64 for fp64 x)."""
    return _stats_op(x, eps, impl)


def instance_norm_apply(
    x: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    act: str | None = None,
    skip: torch.Tensor | None = None,
    impl: Impl = "auto",
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """``skip + act((x - mean) * rstd + shift)`` with statistics from outside (N·C values each, e.g. [N, C]);
    an affine norm passes ``rstd * weight`` and its bias as ``shift``."""
    return _apply_op(x, mean, rstd, _act_name(act), skip, impl, shift)
