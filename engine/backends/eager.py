"""The PyTorch eager backend: the reference every other backend is checked against.

``inference_mode``, channels_last activations, bf16 autocast on CPU and fp16 autocast on CUDA (the
generator's InstanceNorm keeps its statistics in fp32 either way).  On CUDA, frames travel as uint8
through pinned host buffers reused from batch to batch and are converted, padded and cropped on the
GPU, all on the backend's own CUDA stream (``cuda_stream.BackendStream``).
"""

from __future__ import annotations

import contextlib

import torch

from cyclestream.engine.backends.base import Backend, FrameShape, Precision
from cyclestream.engine.backends.cuda_stream import BackendStream
from cyclestream.engine.backends.tensors import from_model_output, to_model_input
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class EagerBackend(Backend):
    name = "eager"

    def __init__(self, device: str = "cpu", channels_last: bool = True, kernels: str = "auto") -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("--device cuda was asked for, but PyTorch sees no CUDA device here")
        self.device = torch.device(device)
        self.channels_last = channels_last
        if kernels not in ("auto", "triton", "reference", "off"):
            raise BackendError(f"--kernels must be auto, triton, reference or off, not {kernels!r}")
        # auto: the fused Triton kernels on CUDA; on the CPU the plain PyTorch layers are the fast path.
        self.kernels = ("triton" if self.device.type == "cuda" else "off") if kernels == "auto" else kernels
        self.precision: Precision = "fp32"
        self._model: torch.nn.Module | None = None
        self._multiple = 4
        self._io: BackendStream | None = None  # CUDA only: own stream, pinned staging buffers

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        if precision == "fp16" and self.device.type == "cpu":
            raise BackendError("fp16 on the CPU is slow and poorly supported; use --precision bf16 or fp32")
        self.precision = precision
        self._multiple = model.spec.size_multiple
        generator = model.generator.to(self.device).eval()
        if self.kernels != "off":
            from cyclestream.kernels import fuse_kernels

            generator = fuse_kernels(generator, mode=self.kernels)  # type: ignore[arg-type]
        if self.channels_last:
            generator = generator.to(memory_format=torch.channels_last)
        self._model = generator
        if self.device.type == "cuda" and self._io is None:
            self._io = BackendStream(self.device)
        self.run(torch.zeros((shape.batch, shape.height, shape.width, 3), dtype=torch.uint8))

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    @torch.inference_mode()
    def run(self, frames: torch.Tensor) -> torch.Tensor:
        if self._model is None:
            raise BackendError("backend used before prepare()")
        if self._io is not None:
            return self._io.run(self._translate, frames)
        return self._translate(frames)

    def _translate(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames → uint8 frames on the device they are on."""
        assert self._model is not None
        height, width = frames.shape[1], frames.shape[2]
        x = to_model_input(frames, self._multiple)
        with self._autocast():
            y = self._model(x)
        return from_model_output(y, height, width)

    def describe(self) -> str:
        fused = "" if self.kernels == "off" else f", {self.kernels} kernels"
        return f"eager ({self.device.type}, {self.precision}{fused})"
