"""Frames in and out of the model: uint8 NHWC RGB ↔ float NCHW on the family's value range, padded and
cropped.

The 0..255 frames are mapped linearly onto the model family's ``value_range`` (engine/models/family.py)
and back: for the CycleGAN/pix2pix range (-1, 1) exactly the official project's ``x / 127.5 - 1`` and
``(y + 1) * 127.5`` (the same float operations: ``x / (255 / (high - low)) + low``), for fast neural
style's (0, 255) the pixel values themselves.  Outputs are rounded and clamped to uint8 instead of
truncated.  Frames of any size are reflect-padded up to the generator's multiple (4 for ResNet,
2**levels for U-Net) and cropped back, so output size == input size; nothing is resized.  These
functions run on whatever device the tensors are on, so a GPU backend uploads uint8 once and does all
of this on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cyclestream.engine.models.family import TANH_RANGE, ValueRange


@dataclass(frozen=True)
class Padding:
    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def to_multiple(cls, height: int, width: int, multiple: int) -> Padding:
        ph = (-height) % multiple
        pw = (-width) % multiple
        return cls(ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)

    @property
    def is_zero(self) -> bool:
        return not (self.top or self.bottom or self.left or self.right)


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    return height + (-height) % multiple, width + (-width) % multiple


def _levels_per_unit(value_range: ValueRange) -> float:
    """How many of the 255 pixel levels one unit of the model's scale spans (127.5 for (-1, 1))."""
    low, high = value_range
    return 255.0 / (high - low)


def to_model_input(
    frames: torch.Tensor,
    multiple: int,
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
    value_range: ValueRange = TANH_RANGE,
    channels: int = 3,
) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, channels, H', W') on ``value_range``, H' and W' padded to ``multiple``.

    ``channels`` 1: a grey generator's input, each pixel's luma as the official dataset makes it
    (PIL's ``convert("L")``: ITU-R 601 weights, rounded to a level) before the scaling.

    ``channels_last``: the result keeps the NHWC memory order, which is what PyTorch's convs want;
    else it is a contiguous NCHW tensor (what ONNX Runtime, OpenVINO and TensorRT bindings take),
    made by reordering the uint8 frames, a quarter of the bytes of reordering the float input.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) frames, got {tuple(frames.shape)} {frames.dtype}")
    if channels not in (1, 3):
        raise ValueError(f"a generator of {channels} image channels: frames convert to 1 (grey) or 3 (RGB)")
    nchw = frames.permute(0, 3, 1, 2)
    if channels == 1:
        nchw = grey(nchw)
    x = (nchw if channels_last else nchw.contiguous()).to(dtype).div_(_levels_per_unit(value_range))
    x = x.add_(value_range[0])
    pad = Padding.to_multiple(x.shape[2], x.shape[3], multiple)
    if pad.is_zero:
        return x
    # Reflection needs the pad to be smaller than the side; tiny frames in a U-Net fall back to replicate.
    fits = max(pad.top, pad.bottom) < x.shape[2] and max(pad.left, pad.right) < x.shape[3]
    mode = "reflect" if fits else "replicate"
    return F.pad(x, (pad.left, pad.right, pad.top, pad.bottom), mode=mode)


def grey(nchw: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) RGB → uint8 (N, 1, H, W) luma: (R·19595 + G·38470 + B·7471 + 2¹⁵) >> 16, PIL's "L"."""
    r, g, b = (nchw[:, i : i + 1].to(torch.int32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)


def from_model_output(
    y: torch.Tensor, height: int, width: int, value_range: ValueRange = TANH_RANGE
) -> torch.Tensor:
    """float (N, 3, H', W') on ``value_range`` → uint8 (N, height, width, 3), cropping the padding away.  A grey
    output (N, 1, H', W') becomes three equal channels, as the official ``tensor2im`` tiles it."""
    ph, pw = y.shape[2] - height, y.shape[3] - width
    if ph < 0 or pw < 0:
        raise ValueError(f"model output {tuple(y.shape[2:])} is smaller than the frame {(height, width)}")
    top, left = ph // 2, pw // 2  # the split Padding.to_multiple makes
    y = y[:, :, top : top + height, left : left + width]
    out = y.float().sub(value_range[0]).mul_(_levels_per_unit(value_range)).round_().clamp_(0, 255).to(torch.uint8)
    if out.shape[1] == 1:
        out = out.expand(-1, 3, -1, -1)
    return out.permute(0, 2, 3, 1).contiguous()
