"""Triton kernels for instance norm and their launchers (the PyTorch references are in instance_norm.py).

This module imports Triton at module level, so nothing imports it until a Triton path runs
(``_dispatch.load_triton_kernels``).  It has to: Triton's interpreter resolves ``tl`` through the
kernel's module globals, and ``TRITON_INTERPRET=1`` is read when the ``@triton.jit`` decorators below
run — when this module is first imported.

Layout.  A 4-D tensor is addressed as ``[N, C, HW]`` with strides ``(s_n, s_c, s_hw)``: contiguous
NCHW has ``s_hw = 1``, channels_last has ``s_c = 1``.  A program handles a ``[BLOCK_C, BLOCK_HW]``
tile of ``BLOCK_C`` (n, c) rows: for NCHW one row at a time (several when rows are short), for
channels_last a run of channels so that each load reads contiguous memory.

Two paths, chosen by row length (``plan_for``):

- *single pass* — the row block fits in one tile (``BLOCK_C × next_pow2(HW) ≤ ROW_MAX``): one program
  per row block loads it once, takes mean and variance over registers (two passes over registers, no
  Σx²), normalizes, applies the epilogue and stores.  NCHW 256² and 512² trunks (64², 128²) take this
  path one row per program; channels_last 256² trunks take it four channels per program (each load a
  16-byte run of channels), since 32 channels of a 64² row would not fit the registers.
- *split reduction* — long rows (a 1080p trunk row is 270 × 480 = 129,600 elements, and there are
  only N × 256 rows): ``_partial_stats_kernel`` runs on a (row block, tile) grid and writes each tile's
  (count, mean, M2); ``_combine_stats_kernel`` merges them per row (Chan et al.:
  ``M2 = Σ M2_t + n_t (mean_t − mean)²``) into mean and rstd; ``_apply_kernel`` normalizes on the same
  (row block, tile) grid.  That is N·256·32 programs for a 1080p frame instead of N·256.

The epilogue is ``skip + act(IN(x))``, with ``act`` none or ReLU and ``skip`` optional (``_apply_shift_kernel``
also adds a per-row ``shift`` before ``act``: an affine norm's bias, its weight folded into rstd); statistics and
arithmetic are fp32 whatever the storage dtype (fp32, fp16, bf16).  ``_apply_kernel`` takes mean and
rstd from memory, so statistics computed elsewhere (smoothed over video frames, say) can be applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from cyclestream.kernels._dispatch import TRITON_DTYPES
from cyclestream.kernels.errors import KernelError

ROW_MAX = 16384  # elements a single-pass program holds in registers (a 128×128 trunk row)
TILE = 4096  # elements per program in the split path
MIN_TILE = 1024  # NCHW rows shorter than this are packed several to a program
CL_BLOCK_C = 32  # channels_last: channels per load in the split path (64 B of fp16 per position)
CL_MIN_BLOCK_C = 4  # channels_last: the fewest channels per load worth a single pass (8-16 B runs)
MAX_TILES = 1024  # tiles per row the combine kernel merges in one block; larger rows get larger tiles
ACT_CODES = {"none": 0, "relu": 1}


# ----------------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _tile(pid_row, pid_tile, C, HW, s_n, s_c, s_hw, n_cblocks, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    """Offsets of a [BLOCK_C, BLOCK_HW] tile: int64 image base, int32 offsets within the image."""
    n = pid_row // n_cblocks
    c = (pid_row % n_cblocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = pid_tile * BLOCK_HW + tl.arange(0, BLOCK_HW)
    c_mask = c < C
    mask = c_mask[:, None] & (hw < HW)[None, :]
    base = n.to(tl.int64) * s_n
    local = c[:, None] * s_c + hw[None, :] * s_hw
    return base, local, mask, n * C + c, c_mask


@triton.jit
def _epilogue(y, skip_ptr, base, local, mask, ACT: tl.constexpr, HAS_SKIP: tl.constexpr):
    """``skip + act(y)`` in fp32."""
    if ACT == 1:
        y = tl.maximum(y, 0.0)
    if HAS_SKIP:
        y = y + tl.load(skip_ptr + base + local, mask=mask, other=0.0).to(tl.float32)
    return y


@triton.jit
def _single_pass_kernel(
    x_ptr, skip_ptr, out_ptr, mean_ptr, rstd_ptr,
    C, HW, s_n, s_c, s_hw, n_cblocks, eps,
    ACT: tl.constexpr, HAS_SKIP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    """Whole rows in one program: statistics, normalize, epilogue; also records mean and rstd."""
    base, local, mask, rows, c_mask = _tile(
        tl.program_id(0), 0, C, HW, s_n, s_c, s_hw, n_cblocks, BLOCK_C, BLOCK_HW
    )
    x = tl.load(x_ptr + base + local, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / HW
    d = tl.where(mask, x - mean[:, None], 0.0)
    rstd = tl.rsqrt(tl.sum(d * d, axis=1) / HW + eps)
    y = _epilogue(d * rstd[:, None], skip_ptr, base, local, mask, ACT, HAS_SKIP)
    tl.store(out_ptr + base + local, y.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + rows, mean, mask=c_mask)
    tl.store(rstd_ptr + rows, rstd, mask=c_mask)


@triton.jit
def _partial_stats_kernel(
    x_ptr, count_ptr, mean_ptr, m2_ptr,
    C, HW, s_n, s_c, s_hw, n_cblocks, n_tiles,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    """Split reduction, step 1: (count, mean, M2) of one tile of each row, at ``[row, tile]``."""
    pid_tile = tl.program_id(1)
    base, local, mask, rows, c_mask = _tile(
        tl.program_id(0), pid_tile, C, HW, s_n, s_c, s_hw, n_cblocks, BLOCK_C, BLOCK_HW
    )
    x = tl.load(x_ptr + base + local, mask=mask, other=0.0).to(tl.float32)
    count = tl.sum(mask.to(tl.float32), axis=1)
    mean = tl.sum(x, axis=1) / tl.maximum(count, 1.0)
    d = tl.where(mask, x - mean[:, None], 0.0)
    m2 = tl.sum(d * d, axis=1)
    idx = rows * n_tiles + pid_tile
    tl.store(count_ptr + idx, count, mask=c_mask)
    tl.store(mean_ptr + idx, mean, mask=c_mask)
    tl.store(m2_ptr + idx, m2, mask=c_mask)


@triton.jit
def _combine_stats_kernel(
    count_ptr, tmean_ptr, m2_ptr, mean_ptr, rstd_ptr, R, n_tiles, eps,
    BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Split reduction, step 2: merge the tiles of BLOCK_R rows into mean and rstd (Chan et al.)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    tiles = tl.arange(0, BLOCK_T)
    row_mask = rows < R
    mask = row_mask[:, None] & (tiles < n_tiles)[None, :]
    idx = rows[:, None] * n_tiles + tiles[None, :]
    count = tl.load(count_ptr + idx, mask=mask, other=0.0)
    tmean = tl.load(tmean_ptr + idx, mask=mask, other=0.0)
    m2 = tl.load(m2_ptr + idx, mask=mask, other=0.0)
    n = tl.maximum(tl.sum(count, axis=1), 1.0)
    mean = tl.sum(count * tmean, axis=1) / n
    delta = tmean - mean[:, None]
    var = tl.sum(m2 + count * delta * delta, axis=1) / n
    tl.store(mean_ptr + rows, mean, mask=row_mask)
    tl.store(rstd_ptr + rows, tl.rsqrt(var + eps), mask=row_mask)


@triton.jit
def _apply_tile(
    x_ptr, skip_ptr, out_ptr, mean_ptr, rstd_ptr, shift_ptr,
    C, HW, s_n, s_c, s_hw, n_cblocks,
    ACT: tl.constexpr, HAS_SKIP: tl.constexpr, HAS_SHIFT: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_HW: tl.constexpr,
):
    """One tile of ``skip + act((x - mean) * rstd [+ shift])``, one fp32 value per (n, c) row each."""
    base, local, mask, rows, c_mask = _tile(
        tl.program_id(0), tl.program_id(1), C, HW, s_n, s_c, s_hw, n_cblocks, BLOCK_C, BLOCK_HW
    )
    mean = tl.load(mean_ptr + rows, mask=c_mask, other=0.0)
    rstd = tl.load(rstd_ptr + rows, mask=c_mask, other=0.0)
    x = tl.load(x_ptr + base + local, mask=mask, other=0.0).to(tl.float32)
    y = (x - mean[:, None]) * rstd[:, None]
    if HAS_SHIFT:
        y = y + tl.load(shift_ptr + rows, mask=c_mask, other=0.0)[:, None]
    y = _epilogue(y, skip_ptr, base, local, mask, ACT, HAS_SKIP)
    tl.store(out_ptr + base + local, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _apply_kernel(
    x_ptr, skip_ptr, out_ptr, mean_ptr, rstd_ptr,
    C, HW, s_n, s_c, s_hw, n_cblocks,
    ACT: tl.constexpr, HAS_SKIP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    """Normalize with given mean/rstd (one fp32 value per (n, c) row), then the epilogue (the signature the
    native launcher's ahead-of-time images have: kernels/aot.py)."""
    _apply_tile(x_ptr, skip_ptr, out_ptr, mean_ptr, rstd_ptr, mean_ptr, C, HW, s_n, s_c, s_hw, n_cblocks,
                ACT, HAS_SKIP, False, BLOCK_C, BLOCK_HW)


@triton.jit
def _apply_shift_kernel(
    x_ptr, skip_ptr, out_ptr, mean_ptr, rstd_ptr, shift_ptr,
    C, HW, s_n, s_c, s_hw, n_cblocks,
    ACT: tl.constexpr, HAS_SKIP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    """``_apply_kernel`` adding a per-row shift before the epilogue: an affine norm (weight folded into rstd)."""
    _apply_tile(x_ptr, skip_ptr, out_ptr, mean_ptr, rstd_ptr, shift_ptr, C, HW, s_n, s_c, s_hw, n_cblocks,
                ACT, HAS_SKIP, True, BLOCK_C, BLOCK_HW)


# ----------------------------------------------------------------------------------------------------
# Layout and launch plan


@dataclass(frozen=True)
class Layout:
    """A dense 4-D tensor seen as [N, C, HW] rows with element strides."""

    n: int
    c: int
    hw: int
    s_n: int
    s_c: int
    s_hw: int

    @property
    def rows(self) -> int:
        return self.n * self.c

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.contiguous_format if self.s_hw == 1 else torch.channels_last


def layout_of(x: torch.Tensor) -> Layout:
    """The layout of a contiguous NCHW or channels_last tensor (others: make them contiguous first)."""
    if x.dim() != 4:
        raise KernelError(f"instance norm kernels take N×C×H×W tensors, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if x.is_contiguous():
        return Layout(n, c, h * w, c * h * w, h * w, 1)
    if x.is_contiguous(memory_format=torch.channels_last):
        return Layout(n, c, h * w, c * h * w, 1, c)
    raise KernelError("instance norm kernels take contiguous NCHW or channels_last tensors")


def dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when it is contiguous NCHW or channels_last, else a contiguous NCHW copy."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


@dataclass(frozen=True)
class Plan:
    """How a launch tiles the rows: block sizes, tiles per row, and which path."""

    block_c: int
    block_hw: int
    n_tiles: int
    single_pass: bool
    num_warps: int


def _pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def _pow2_floor(v: int) -> int:
    return 1 << (v.bit_length() - 1) if v > 0 else 0


def _warps(elements: int) -> int:
    return min(16, _pow2(max(1, elements // 512)))


def plan_for(
    layout: Layout, *, row_max: int = ROW_MAX, tile: int = TILE, block_c: int | None = None
) -> Plan:
    """Single pass when a row block fits ``row_max`` elements, otherwise split into ``tile``-sized tiles.

    A row block is ``block_c`` rows.  NCHW: one row, or several when rows are shorter than ``MIN_TILE``
    so that a program has work.  channels_last (channels are the contiguous dimension): the single pass
    with as many channels as fit ``row_max`` when that is at least ``CL_MIN_BLOCK_C`` (or all of them),
    else the split path with ``CL_BLOCK_C``-channel runs.  ``row_max=0`` forces the split path; tests
    also pass ``block_c`` to keep the interpreter's program count small.
    """
    for name, value in (("tile", tile), ("block_c", block_c or 1)):
        if value < 1 or value & (value - 1):
            raise ValueError(f"{name} must be a power of two, got {value}")
    if block_c is None and layout.s_c == 1 and layout.c > 1:
        fits = _pow2_floor(row_max // _pow2(layout.hw)) if row_max >= _pow2(layout.hw) else 0
        single_c = min(_pow2(layout.c), CL_BLOCK_C, fits)
        block_c = single_c if single_c >= min(CL_MIN_BLOCK_C, _pow2(layout.c)) else min(_pow2(layout.c), CL_BLOCK_C)
    if block_c is None:
        block_c = min(_pow2(layout.c), max(1, MIN_TILE // _pow2(layout.hw)))
    row_block = block_c * _pow2(layout.hw)
    if row_block <= row_max:
        return Plan(block_c, _pow2(layout.hw), 1, True, _warps(row_block))
    block_hw = max(1, tile // block_c)
    while triton.cdiv(layout.hw, block_hw) > MAX_TILES:
        block_hw *= 2
    return Plan(block_c, block_hw, triton.cdiv(layout.hw, block_hw), False, _warps(block_c * block_hw))


# ----------------------------------------------------------------------------------------------------
# Launchers


def _check_input(x: torch.Tensor) -> None:
    if x.dtype not in TRITON_DTYPES:
        raise KernelError(f"Triton instance norm supports float32, float16 and bfloat16, got {x.dtype}")
    if not x.is_cuda and not isinstance(_apply_kernel, InterpretedFunction):
        raise KernelError(
            "the Triton kernels were built for the GPU: set TRITON_INTERPRET=1 before the first kernel "
            "call to run them on CPU tensors"
        )


def _output(x: torch.Tensor, layout: Layout, dtype: torch.dtype, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=layout.memory_format)
    if out.shape != x.shape or out.dtype != dtype or out.device != x.device or layout_of(out) != layout:
        raise KernelError("out must match the input's shape, device and memory format, and the op's dtype")
    return out


def _stats_buffers(x: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    def empty() -> torch.Tensor:
        return torch.empty((layout.n, layout.c), dtype=torch.float32, device=x.device)

    return empty(), empty()


def _act_code(act: str) -> int:
    if act not in ACT_CODES:
        raise KernelError(f"unknown activation {act!r} (expected one of {', '.join(ACT_CODES)})")
    return ACT_CODES[act]


def _grid(layout: Layout, plan: Plan) -> tuple[int, int]:
    return layout.n * triton.cdiv(layout.c, plan.block_c), plan.n_tiles


def partial_stats(
    x: torch.Tensor, plan: Plan, out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 1 of the split reduction: per-tile (count, mean, M2), each fp32 of shape [N·C, n_tiles]."""
    _check_input(x)
    layout = layout_of(x)
    if out is None:
        count, mean, m2 = (
            torch.empty((layout.rows, plan.n_tiles), dtype=torch.float32, device=x.device) for _ in range(3)
        )
    else:
        count, mean, m2 = out
    n_row_blocks, n_tiles = _grid(layout, plan)
    _partial_stats_kernel[(n_row_blocks, n_tiles)](
        x, count, mean, m2,
        layout.c, layout.hw, layout.s_n, layout.s_c, layout.s_hw, n_row_blocks // layout.n, n_tiles,
        BLOCK_C=plan.block_c, BLOCK_HW=plan.block_hw, num_warps=plan.num_warps,
    )
    return count, mean, m2


def stats(x: torch.Tensor, eps: float, *, plan: Plan | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and rstd = 1/sqrt(var + eps) of each (n, c) row, fp32 [N, C], by the split reduction."""
    x = dense(x)
    _check_input(x)
    layout = layout_of(x)
    if plan is None:
        plan = plan_for(layout)
    count, tmean, m2 = partial_stats(x, plan)
    mean, rstd = _stats_buffers(x, layout)
    block_t = _pow2(plan.n_tiles)
    block_r = max(1, min(64, 2048 // block_t))
    _combine_stats_kernel[(triton.cdiv(layout.rows, block_r),)](
        count, tmean, m2, mean, rstd, layout.rows, plan.n_tiles, eps, BLOCK_R=block_r, BLOCK_T=block_t
    )
    return mean, rstd


def _skip_like(skip: torch.Tensor | None, x: torch.Tensor, layout: Layout) -> torch.Tensor | None:
    if skip is None:
        return None
    if skip.shape != x.shape or skip.device != x.device:
        raise KernelError(
            f"skip must have the input's shape and device, got {tuple(skip.shape)} on {skip.device} "
            f"for {tuple(x.shape)} on {x.device}"
        )
    _check_input(skip)
    return skip.contiguous(memory_format=layout.memory_format)


def _out_dtype(x: torch.Tensor, skip: torch.Tensor | None) -> torch.dtype:
    return x.dtype if skip is None else torch.promote_types(x.dtype, skip.dtype)


def apply(
    x: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    act: str = "none",
    skip: torch.Tensor | None = None,
    *,
    shift: torch.Tensor | None = None,
    plan: Plan | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``skip + act((x - mean) * rstd + shift)`` with mean, rstd and shift given per (n, c) row (N·C values
    each)."""
    x = dense(x)
    _check_input(x)
    layout = layout_of(x)
    if mean.numel() != layout.rows or rstd.numel() != layout.rows:
        raise KernelError(f"mean and rstd need N×C = {layout.rows} values each")
    if shift is not None and shift.numel() != layout.rows:
        raise KernelError(f"shift needs N×C = {layout.rows} values")
    mean = mean.to(device=x.device, dtype=torch.float32).contiguous()
    rstd = rstd.to(device=x.device, dtype=torch.float32).contiguous()
    shift = None if shift is None else shift.to(device=x.device, dtype=torch.float32).contiguous()
    skip = _skip_like(skip, x, layout)
    out = _output(x, layout, _out_dtype(x, skip), out)
    if plan is None:
        plan = plan_for(layout, row_max=0)  # no reduction here: always the (row block, tile) grid
    grid = _grid(layout, plan)
    tensors = (x, x if skip is None else skip, out, mean, rstd)
    kernel, args = (_apply_kernel, tensors) if shift is None else (_apply_shift_kernel, (*tensors, shift))
    kernel[grid](
        *args, layout.c, layout.hw, layout.s_n, layout.s_c, layout.s_hw, grid[0] // layout.n,
        ACT=_act_code(act), HAS_SKIP=skip is not None,
        BLOCK_C=plan.block_c, BLOCK_HW=plan.block_hw, num_warps=plan.num_warps,
    )
    return out


def normalize(
    x: torch.Tensor,
    eps: float,
    act: str = "none",
    skip: torch.Tensor | None = None,
    *,
    plan: Plan | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``skip + act(IN(x))`` and the mean and rstd it used: single pass or split, as ``plan`` says."""
    x = dense(x)
    _check_input(x)
    layout = layout_of(x)
    if plan is None:
        plan = plan_for(layout)
    if not plan.single_pass:
        mean, rstd = stats(x, eps, plan=plan)
        return apply(x, mean, rstd, act, skip, plan=plan, out=out), mean, rstd
    skip = _skip_like(skip, x, layout)
    out = _output(x, layout, _out_dtype(x, skip), out)
    mean, rstd = _stats_buffers(x, layout)
    n_row_blocks, _ = _grid(layout, plan)
    _single_pass_kernel[(n_row_blocks,)](
        x, x if skip is None else skip, out, mean, rstd,
        layout.c, layout.hw, layout.s_n, layout.s_c, layout.s_hw, n_row_blocks // layout.n, eps,
        ACT=_act_code(act), HAS_SKIP=skip is not None,
        BLOCK_C=plan.block_c, BLOCK_HW=plan.block_hw, num_warps=plan.num_warps,
    )
    return out, mean, rstd
