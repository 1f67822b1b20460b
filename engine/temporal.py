"""Temporal stability: causal stabilisers applied to each translated frame, in order.

Per-frame CycleGAN output flickers: sensor noise and small content changes swing textures and
colours from one frame to the next.  A stabiliser sees each (input, per-frame output) pair in order
and returns the frame to write.  It only uses the past, so it works live, and it runs on uint8 RGB
after the model, so it works with every backend.

``blend`` keeps a running average of the output, and of the input it belongs to, and mixes it into
each new output where the new input matches that averaged input to within the noise.  Where the
input really changes (motion, a new object, a cut) the weight falls to 0 and the output is the
per-frame result, so nothing ghosts; a scene cut (a large change of the whole picture) restarts
the average.  ``flow`` does the same after warping the averages along the optical flow between the
inputs (OpenCV's DIS), so moving regions are stabilised too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cyclestream.engine.errors import CycleStreamError

METHODS = ("off", "on", "blend", "flow")
DEFAULT_ON = "blend"  # what `--temporal on` means (README: "Temporal stability" has the numbers)


@dataclass(frozen=True)
class BlendSettings:
    keep: float = 0.8  # weight of the running average where the input is still (0: per-frame output)
    still: float = 4.0  # mean |input change| (levels, 5x5 neighbourhood) still counted as noise
    moving: float = 10.0  # from this change on, the output is the per-frame result
    cut_change: float = 45.0  # mean |grey change| of the whole picture (1/8 scale) that marks a scene cut...
    cut_histogram: float = 0.5  # ...or this L1 distance between grey histograms (motion keeps the histogram)
    radius: int = 2  # neighbourhood half-size for the change measure (5x5)


def box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² neighbourhood (edges replicated), float32; separable running sums."""
    if radius <= 0:
        return image.astype(np.float32)
    k = 2 * radius + 1
    padded = np.pad(image.astype(np.float32), ((radius, radius), (radius, radius)), mode="edge")
    c = np.cumsum(padded, axis=0, dtype=np.float32)
    rows = np.concatenate([c[k - 1 : k], c[k:] - c[:-k]], axis=0)
    c = np.cumsum(rows, axis=1, dtype=np.float32)
    return np.concatenate([c[:, k - 1 : k], c[:, k:] - c[:, :-k]], axis=1) / (k * k)


def grey(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _histogram(grey_image: np.ndarray) -> np.ndarray:
    counts = np.histogram(grey_image, bins=16, range=(0, 256))[0].astype(np.float32)
    return counts / max(1.0, float(counts.sum()))


def is_cut(a: np.ndarray, b: np.ndarray, settings: BlendSettings) -> bool:
    """A scene cut between two frames: the whole picture changed a lot, or its tones did.  Measured
    on real clips (bikes, cockatoo, vtest, the demo clip): motion stays under 40 levels and 0.3 of
    histogram distance; cuts reach 55 or 1.1."""
    ga, gb = grey(a[::4, ::4]), grey(b[::4, ::4])
    if float(np.abs(ga - gb).mean()) > settings.cut_change:
        return True
    return float(np.abs(_histogram(ga) - _histogram(gb)).sum()) > settings.cut_histogram


class Blend:
    """Motion-aware running average of outputs (see the module docstring)."""

    def __init__(self, settings: BlendSettings | None = None, flow: bool = False) -> None:
        self.settings = settings or BlendSettings()
        self._flow = DisFlow() if flow else None
        self._input: np.ndarray | None = None  # the running average of inputs, float32
        self._output: np.ndarray | None = None  # the running average of outputs, float32
        self._last: np.ndarray | None = None  # the previous input, for cut detection
        self.cuts = 0

    def reset(self) -> None:
        self._input = self._output = self._last = None

    def __call__(self, source: np.ndarray, output: np.ndarray) -> np.ndarray:
        s = self.settings
        if self._last is not None and is_cut(source, self._last, s):
            self.cuts += 1
            self.reset()
        self._last = source
        if self._input is None or self._output is None or self._input.shape != source.shape:
            self._input, self._output = source.astype(np.float32), output.astype(np.float32)
            return output
        ref_in, ref_out = self._input, self._output
        if self._flow is not None:
            previous = np.clip(self._input + 0.5, 0, 255).astype(np.uint8)
            ref_in, ref_out = self._flow.warp_back(source, previous, self._input, self._output)
        change = box_blur(np.abs(source.astype(np.float32) - ref_in).mean(axis=2), s.radius)
        weight = s.keep * np.clip((s.moving - change) / (s.moving - s.still), 0.0, 1.0)[..., None]
        self._input = ref_in + (1 - weight) * (source - ref_in)
        self._output = ref_out + (1 - weight) * (output - ref_out)
        return np.clip(self._output + 0.5, 0, 255).astype(np.uint8)


class DisFlow:
    """Backward optical flow (current frame → previous frame) with OpenCV's DIS, and warping along it:
    what the flow stabiliser and the warping error of ``bench temporal`` both use."""

    def __init__(self, preset: str = "ULTRAFAST") -> None:
        try:
            import cv2
        except ImportError:
            raise CycleStreamError(
                "--temporal flow needs OpenCV: pip install opencv-python-headless (or use --temporal blend)"
            ) from None
        self.cv2 = cv2
        self.dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset}"))
        self._grid: np.ndarray | None = None

    def warp_back(self, current: np.ndarray, previous: np.ndarray, *images: np.ndarray) -> list[np.ndarray]:
        """``images`` (aligned with uint8 ``previous``) moved to where their content is in ``current``."""
        cv2 = self.cv2
        flow = self.dis.calc(
            cv2.cvtColor(current, cv2.COLOR_RGB2GRAY), cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY), None
        )
        h, w = flow.shape[:2]
        if self._grid is None or self._grid.shape[:2] != (h, w):
            self._grid = np.dstack(np.meshgrid(np.arange(w), np.arange(h))).astype(np.float32)
        where = self._grid + flow
        return [cv2.remap(im, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                for im in images]


Stabiliser = Callable[[np.ndarray, np.ndarray], np.ndarray]


def make_stabiliser(method: str) -> Stabiliser | None:
    """The stabiliser for ``--temporal METHOD`` (a new one per stream: it keeps state); None for off."""
    if method == "off":
        return None
    if method == "on":
        method = DEFAULT_ON
    if method == "blend":
        return Blend()
    if method == "flow":
        return Blend(flow=True)
    raise CycleStreamError(f"unknown --temporal {method!r} (choose from {', '.join(METHODS)})")
