"""torch.compile (inductor): the eager backend's model compiled for the prepared frame shape.

Compiled once per frame shape in ``prepare`` (tens of seconds on a small CPU; inductor's on-disk
cache makes later starts faster).  A shorter last batch is padded up to the prepared batch with
blank frames and cropped back, so it does not trigger a recompilation; frames of another size do
recompile (once per size).  On the CPU, inductor needs a C++ compiler (g++ or clang++).
"""

from __future__ import annotations

import logging
import os
import shutil

import torch

from cyclestream.engine.backends.base import Backend, FrameShape, Precision, autocast
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, first_line

log = logging.getLogger("cyclestream")

def find_cxx() -> str | None:
    """The C++ compiler inductor would use on the CPU ($CXX, g++, c++ or clang++), if any."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and (path := shutil.which(name)):
            return path
    return None


class CompiledBackend(Backend):
    name = "compile"

    def __init__(self, device: str = "cpu") -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("--device cuda was asked for, but PyTorch sees no CUDA device here")
        self.device = torch.device(device)
        self._model: torch.nn.Module | None = None
        self._batch = 1

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        if self.device.type == "cpu":
            if precision == "fp16":
                raise BackendError("fp16 on the CPU is slow and poorly supported; use --precision bf16 or fp32")
            if find_cxx() is None:
                raise BackendError("torch.compile on the CPU needs a C++ compiler: apt-get install g++")
        self.precision = precision
        self._batch = shape.batch
        generator = model.generator.to(self.device).eval().to(memory_format=torch.channels_last)
        self._model = torch.compile(generator, dynamic=False)
        log.info("compiling the generator with torch.compile (inductor); the first run takes a while")
        try:
            self.ready(model, shape)
        except Exception as e:
            self._model = None
            raise BackendError(f"torch.compile failed: {first_line(e)}") from e

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        assert self._model is not None, "prepare() first"
        n = x.shape[0]
        inputs = (x, *self.conditioning_batch(x))  # with the label / z rows of these n frames
        if n < self._batch:  # the last batch of a video: pad it rather than recompile
            inputs = tuple(torch.cat([v, v.new_zeros((self._batch - n, *v.shape[1:]))]) for v in inputs)
        x, *values = inputs
        x = x.to(self.device, memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            return self._model(x, *(v.to(self.device) for v in values))[:n]

    def describe(self) -> str:
        return f"compile (inductor, {self.device.type}, {self.precision})"

    def close(self) -> None:
        super().close()
        self._model = None
