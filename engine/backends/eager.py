"""The PyTorch eager backend: the reference every other backend is checked against.

``inference_mode``, channels_last activations, bf16 autocast on CPU and fp16 autocast on CUDA (the
generator's InstanceNorm keeps its statistics in fp32 either way).  On CUDA, frames travel as uint8
through pinned host buffers reused from batch to batch and are converted, padded and cropped on the
GPU, all on the backend's own CUDA stream (``cuda_stream.BackendStream``).
"""

from __future__ import annotations

import torch

from cyclestream.engine.backends.base import Backend, FrameShape, Precision, autocast
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError


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
        self._model: torch.nn.Module | None = None

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        if precision == "fp16" and self.device.type == "cpu":
            raise BackendError("fp16 on the CPU is slow and poorly supported; use --precision bf16 or fp32")
        self.precision = precision
        generator = model.generator.to(self.device).eval()
        if self.kernels != "off":
            from cyclestream.engine.models.fuse import fuse_kernels

            generator = fuse_kernels(generator, mode=self.kernels)  # type: ignore[arg-type]
        if self.channels_last:
            generator = generator.to(memory_format=torch.channels_last)
        self._model = generator
        self.ready(model, shape)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        assert self._model is not None, "prepare() first"
        with autocast(self.device, self.precision):
            x = x.to(self.device)
            return self._model(x, *self.conditioning_batch(x))

    def describe(self) -> str:
        fused = "" if self.kernels == "off" else f", {self.kernels} kernels"
        return f"eager ({self.device.type}, {self.precision}{fused})"
