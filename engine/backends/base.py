"""The Backend interface: every way of running a generator looks like this to the pipeline.

``prepare(model, shape, precision)`` once, then ``run(frames)`` many times.  ``run`` takes and returns
uint8 RGB frames, (N, H, W, 3), on the host: a backend owns the whole step from uint8 in to uint8
out, so a GPU backend can upload uint8 once and convert, pad, crop and convert back on the device.
Nothing outside engine/backends/ branches on which backend it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from cyclestream.engine.checkpoint import LoadedModel

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class FrameShape:
    """The frames a backend is prepared for: batch size and frame size (before padding)."""

    batch: int
    height: int
    width: int


class Backend(ABC):
    name: ClassVar[str]

    @abstractmethod
    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        """Build whatever this backend needs for ``shape`` and run it once (warm-up)."""

    @abstractmethod
    def run(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) host frames → translated uint8 (N, H, W, 3) host frames, N ≤ shape.batch."""

    def describe(self) -> str:
        """One line for logs and reports: backend, device, precision."""
        return self.name

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release device memory, sessions, engines."""
