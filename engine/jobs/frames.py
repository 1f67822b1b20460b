"""Frames held in memory through a generator: one frame, a batch, or an iterator of frames in order.

What an application, a notebook or an OBS script embeds: :class:`Translator` takes numpy HxWx3 uint8
arrays, PIL images or torch uint8 HxWx3 tensors and gives back the same kind.  A backend is prepared
the first time a frame size is seen (``RunOptions``: backend, device, precision, batch size) and kept
for later frames of that size; ``stream()`` applies ``--temporal`` across the frames, as a video job does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from cyclestream.engine.backends.base import Backend
from cyclestream.engine.backends.options import prepare_backend
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.options import TranslatorOptions
from cyclestream.engine.temporal import make_stabiliser

Frame = Any  # numpy.ndarray (H, W, 3) uint8 | PIL.Image.Image | torch.Tensor (H, W, 3) uint8


def _as_array(frame: Frame) -> np.ndarray:
    """Any accepted frame as a contiguous (H, W, 3) uint8 RGB array."""
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    elif not isinstance(frame, np.ndarray) and hasattr(frame, "convert") and hasattr(frame, "mode"):  # PIL
        frame = np.asarray(frame.convert("RGB") if frame.mode != "RGB" else frame)
    if not isinstance(frame, np.ndarray):
        raise CycleStreamError(f"expected a frame (numpy array, PIL image or torch tensor), got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise CycleStreamError(f"expected an RGB frame of shape (H, W, 3) and dtype uint8, got shape "
                               f"{tuple(frame.shape)} and dtype {frame.dtype}")
    return np.ascontiguousarray(frame)


def _like(image: np.ndarray, original: Frame) -> Frame:
    """``image`` in the kind ``original`` came in."""
    if isinstance(original, torch.Tensor):
        return torch.from_numpy(image)
    if isinstance(original, np.ndarray):
        return image
    from PIL import Image

    return Image.fromarray(image, "RGB")


class Translator:
    """A generator ready to translate frames in memory; close it (or use ``with``) to free its backends."""

    def __init__(self, model: LoadedModel, *, options: TranslatorOptions | None = None) -> None:
        model.require_image_input()  # a model that generates from noise alone has nothing to translate
        self.model = model
        self.options = options or TranslatorOptions()
        self._backends: dict[tuple[int, int], Backend] = {}

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __call__(self, frame: Frame) -> Frame:
        """One frame → the translated frame, of the same kind and size."""
        return _like(self._run([_as_array(frame)])[0], frame)

    def batch(self, frames: Sequence[Frame]) -> list[Frame]:
        """Frames (any sizes) → translated frames in the same order; same-size neighbours share model calls."""
        arrays = [_as_array(f) for f in frames]
        out: list[np.ndarray] = []
        start = 0
        while start < len(arrays):
            end = start + 1
            while (end < len(arrays) and end - start < self.options.run.batch_size
                   and arrays[end].shape == arrays[start].shape):
                end += 1
            out.extend(self._run(arrays[start:end]))
            start = end
        return [_like(image, f) for image, f in zip(out, frames, strict=True)]

    def stream(self, frames: Iterable[Frame], *, temporal: str | None = None) -> Iterator[Frame]:
        """An iterator of frames → translated frames in order, steadied across frames by ``temporal``
        (the options' ``temporal`` by default: ``on``)."""
        stabilise = make_stabiliser(self.options.temporal if temporal is None else temporal)
        for frame in frames:
            image = _as_array(frame)
            out = self._run([image])[0]
            yield _like(stabilise(image, out) if stabilise is not None else out, frame)

    def describe(self) -> str:
        """The backends prepared so far, one per frame size."""
        return ", ".join(f"{w}x{h}: {b.describe()}" for (h, w), b in self._backends.items()) or "not prepared yet"

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()

    def _run(self, images: list[np.ndarray]) -> list[np.ndarray]:
        height, width = images[0].shape[:2]
        backend = self._backends.get((height, width))
        if backend is None:
            backend = prepare_backend(self.model, self.options.run, height, width)
            self._backends[(height, width)] = backend
        return list(backend.run(torch.from_numpy(np.stack(images))).numpy())
