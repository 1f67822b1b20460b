"""The Backend interface: every way of running a generator looks like this to the pipeline.

A backend is two methods: ``prepare(model, shape, precision)`` builds whatever it needs (a session, an
engine, a compiled graph) and ends with ``self.ready(model, shape)``; ``infer(x)`` runs the generator
on a float (N, 3, H', W') input already padded to the model's size multiple.  ``run(frames)``, which
the pipeline calls, is written once here: uint8 (N, H, W, 3) host frames → (on CUDA: through the
backend's own stream and pinned buffers, ``cuda_stream.BackendStream``) → ``to_model_input`` →
``infer`` → ``from_model_output`` → uint8 host frames, scaled to and from the model family's value
range.  A GPU backend thus uploads uint8 once and converts, pads, crops and converts back on the
device.  Nothing outside engine/backends/ branches on which backend it has.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from cyclestream.engine.backends.cuda_stream import BackendStream
from cyclestream.engine.backends.options import Precision
from cyclestream.engine.backends.tensors import from_model_output, to_model_input
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError
from cyclestream.engine.models.family import TANH_RANGE, ValueRange

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[object]:
    """Mixed precision for a PyTorch module: bf16/fp16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in _AUTOCAST_DTYPES:  # int8 is a quantised graph: onnxruntime, openvino
        raise BackendError(f"PyTorch runs fp32, bf16 or fp16, not {precision}: use --backend onnxruntime or openvino")
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


@dataclass(frozen=True)
class FrameShape:
    """The frames a backend is prepared for: batch size and frame size (before padding)."""

    batch: int
    height: int
    width: int


class Backend(ABC):
    name: ClassVar[str]
    device: torch.device = torch.device("cpu")
    precision: Precision = "fp32"
    input_dtype: torch.dtype = torch.float32  # what infer() takes (TensorRT fp16 engines take fp16)
    input_channels_last: bool = True  # NHWC memory order for infer(); False: contiguous NCHW (ONNX bindings)
    _multiple: int = 4  # the model's size multiple, set by ready()
    _value_range: ValueRange = TANH_RANGE  # the model family's input/output scale, set by ready()
    _channels: int = 3  # the generator's image channels (1: grey, converted at the edges), set by ready()
    _io: BackendStream | None = None  # CUDA only: own stream, pinned staging buffers
    _ready: bool = False
    # The values of the generator's inputs besides the image (StarGAN's label, BicycleGAN's z), each
    # (1, size), set before prepare() (engine/conditioning.py); fed by every backend.
    conditioning: tuple[torch.Tensor, ...] = ()
    # A path of values over time (``--z-walk``): the values at a frame's time in seconds; the pipeline sets
    # ``frame_times`` (one per frame of the next ``run``, None where a frame has no timestamp).
    conditioning_at: Callable[[float], tuple[torch.Tensor, ...]] | None = None
    frame_times: list[float | None] | None = None
    # Values for each frame of the next ``run`` ((N, size) each), set by a batcher whose frames come from
    # streams holding values of their own (``SharedBackend``: each browser's ``--target``); None: the above.
    frame_conditioning: tuple[torch.Tensor, ...] | None = None

    @abstractmethod
    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        """Build whatever this backend needs for ``shape``, then ``self.ready(model, shape)``."""

    @abstractmethod
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """The generator on a float (N, 3, H', W') input already padded to the size multiple, on the
        backend's device (or the host for CPU backends); returns float (N, 3, H', W')."""

    def frame_values(self, n: int) -> tuple[torch.Tensor, ...]:
        """The conditioning values of the next run's ``n`` frames, (n, size) each, on the host: the batcher's
        rows, else the path's values at the frames' times, else the constant values repeated."""
        if self.frame_conditioning is not None and all(len(v) == n for v in self.frame_conditioning):
            return self.frame_conditioning
        times = self.frame_times
        if self.conditioning_at is not None and times is not None and len(times) == n:
            rows = [self.conditioning_at(t) if t is not None else self.conditioning for t in times]
            return tuple(torch.cat(values) for values in zip(*rows, strict=True))
        return tuple(c.expand(n, -1) for c in self.conditioning)

    def conditioning_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The conditioning values for the batch of ``x``, on its device, in its dtype."""
        return tuple(v.to(x.device, x.dtype).contiguous() for v in self.frame_values(x.shape[0]))

    def ready(self, model: LoadedModel, shape: FrameShape) -> None:
        """The end of every ``prepare``: remember the size multiple and the family's value range, open the
        CUDA stream, warm up once."""
        self._multiple = model.spec.size_multiple
        self._value_range = model.family.value_range
        self._channels = model.spec.image_channels
        if self.device.type == "cuda" and self._io is None:
            self._io = BackendStream(self.device)
        self._ready = True
        try:
            self.run(torch.zeros((shape.batch, shape.height, shape.width, 3), dtype=torch.uint8))
        except BaseException:
            self._ready = False
            raise

    @torch.inference_mode()
    def run(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) host frames → translated uint8 (N, H, W, 3) host frames, N ≤ shape.batch."""
        if not self._ready:
            raise BackendError(f"the {self.name} backend was used before prepare()")
        if self._io is not None:
            return self._io.run(self._translate, frames)
        return self._translate(frames)

    def _translate(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames → uint8 frames, on the device the frames are on."""
        height, width = frames.shape[1], frames.shape[2]
        x = to_model_input(frames, self._multiple, dtype=self.input_dtype, channels_last=self.input_channels_last,
                           value_range=self._value_range, channels=self._channels)
        return from_model_output(self.infer(x), height, width, self._value_range)

    def describe(self) -> str:
        """One line for logs and reports: backend, device, precision."""
        return self.name

    def close(self) -> None:
        """Release device memory, sessions, engines."""
        self._ready = False


class Wrapper(Backend):
    """A backend that hands every call to another one (``auto``'s choice, a shared model)."""

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner().infer(x)

    @abstractmethod
    def inner(self) -> Backend:
        """The backend calls go to; a BackendError if there is none yet."""

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inner().run(frames)
