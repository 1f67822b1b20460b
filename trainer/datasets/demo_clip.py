"""The bundled demo clip: emoji of the source style moving, zooming and turning over white, with sound.

``make_demo_clip(out, options)`` draws a few emoji in one style (OpenMoji by default: the style the
bundled model translates from) on a white background, each on its own path with its own zoom and
rotation, and encodes them with PyAV as H.264 (libx264, yuv420p) in MP4 with an AAC track: a soft
chord made with numpy, there so that ``cyclestream demo`` shows audio passing through untouched.
The clip is deterministic and small (well under 1 MB); frames are few, since the model runs a few
frames per second on a laptop CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.media.synthetic import encode_rgb_clip
from cyclestream.trainer.datasets import DatasetError
from cyclestream.trainer.datasets.emoji import crop_content, make_style
from cyclestream.trainer.datasets.options import DEMO_EMOJI, DemoClipOptions

CHORD_HZ = (130.81, 261.63, 329.63, 392.00)  # C3 + C major triad


@dataclass
class DemoClipReport:
    path: Path
    size: tuple[int, int]
    fps: int
    frames: int
    seconds: float
    bytes: int


@dataclass(frozen=True)
class _Motion:
    """Where a sprite is at time t (s): a Lissajous path, a breathing zoom, a swing or a spin."""

    sprite: Image.Image
    base: float  # longer side at zoom 1, in pixels
    phase: float
    spin: float  # whole turns over the clip; 0: swing instead

    def place(self, t: float, length: float, width: int, height: int,
              ) -> tuple[Image.Image, tuple[int, int], float]:
        u = 2 * math.pi * t / length
        zoom = 1 + 0.35 * math.sin(2 * u + self.phase)
        x = width / 2 + 0.32 * width * math.sin(u + self.phase)
        y = height / 2 + 0.30 * height * math.sin(2 * u + 1.7 * self.phase)
        angle = 360 * self.spin * t / length if self.spin else 25 * math.sin(3 * u + self.phase)
        scale = self.base * zoom / max(self.sprite.size)
        size = (max(1, round(self.sprite.width * scale)), max(1, round(self.sprite.height * scale)))
        image = self.sprite.resize(size, Image.Resampling.LANCZOS)
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        return image, (round(x - image.width / 2), round(y - image.height / 2)), zoom


def _motions(options: DemoClipOptions) -> list[_Motion]:
    style = make_style(options.style)
    listing = style.listing()
    motions = []
    n = len(options.emoji)
    for i, key in enumerate(options.emoji):
        if listing is not None and key not in listing:
            raise DatasetError(f"emoji {key} is not in the {options.style} style")
        if listing is None and not style.supports(key, "".join(chr(int(p, 16)) for p in key.split("-"))):
            raise DatasetError(f"emoji {key} is not in the {options.style} style")
        sprite = crop_content(style.render(key))
        base = min(options.size) * (0.24 + 0.05 * (i % 3))
        motions.append(_Motion(sprite, base, 2 * math.pi * i / n, spin=(1 if i % 3 == 2 else 0) * (-1) ** i))
    return motions


def render_frames(options: DemoClipOptions) -> Iterator[np.ndarray]:
    """The clip's frames, (H, W, 3) uint8 RGB."""
    width, height = options.size
    motions = _motions(options)
    for index in range(options.frame_count):
        t = index / options.fps
        canvas = Image.new("RGBA", (width, height), (255, 255, 255, 255))
        placed = [m.place(t, options.seconds, width, height) for m in motions]
        for image, (x, y), _zoom in sorted(placed, key=lambda p: p[2]):  # larger ones in front
            layer = Image.new("RGBA", (width, height), (255, 255, 255, 0))
            layer.paste(image, (x, y))
            canvas.alpha_composite(layer)
        yield np.asarray(canvas.convert("RGB"))


def chord(seconds: float, sample_rate: int) -> np.ndarray:
    """(2, samples) float32 stereo: a quiet C major chord with a slow tremolo, faded in and out."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    left = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate(CHORD_HZ))
    right = sum(np.sin(2 * np.pi * f * 1.003 * t + 0.5) / (k + 1) for k, f in enumerate(CHORD_HZ))
    fades = np.minimum(1.0, t / 0.5) * np.minimum(1.0, (seconds - t) / 1.0)
    envelope = fades * (0.85 + 0.15 * np.sin(2 * np.pi * 0.5 * t))
    stereo = np.stack([left, right]) * envelope * 0.12
    return stereo.astype(np.float32)


def _encode(path: Path, options: DemoClipOptions) -> int:
    sound = chord(options.frame_count / options.fps, options.sample_rate)
    return encode_rgb_clip(
        path, render_frames(options), options.fps, crf=options.crf, preset="slow", tune="animation",
        audio=sound, sample_rate=options.sample_rate, label="the demo clip",
    )


def make_demo_clip(out: str | os.PathLike[str], options: DemoClipOptions | None = None) -> DemoClipReport:
    """Write the demo clip to ``out`` (an .mp4), atomically."""
    options = options or DemoClipOptions()
    target = Path(out)
    with atomic_output(target) as tmp:
        frames = _encode(tmp, options)
    size = target.stat().st_size
    return DemoClipReport(target, options.size, options.fps, frames, frames / options.fps, size)


__all__ = ["DEMO_EMOJI", "DemoClipOptions", "DemoClipReport", "chord", "make_demo_clip", "render_frames"]
