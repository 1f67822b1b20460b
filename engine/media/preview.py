"""Side-by-side preview PNGs (input | output), the picture a person looks at after a job."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.media.frame import TranslatedFrame


def preview_indices(expected_frames: int, count: int = 3) -> set[int]:
    """Which frames to show: spread over the clip (the first ones when its length is unknown)."""
    if expected_frames <= 0:
        return set(range(count))
    return {min(expected_frames - 1, round(expected_frames * (i + 0.5) / count)) for i in range(count)}


class PreviewCollector:
    """Keeps the (input, output) pairs of a few chosen frames while a job streams past."""

    def __init__(self, indices: set[int]) -> None:
        self.indices = indices
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def offer(self, frame: TranslatedFrame) -> None:
        if frame.source.index in self.indices:
            self.pairs.append((frame.source.image, frame.image))


def side_by_side(
    pairs: list[tuple[np.ndarray, np.ndarray]], labels: tuple[str, str] = ("input", "output")
) -> Image.Image:
    """One row per pair: input on the left, output on the right, a thin gutter, labels on top."""
    gutter, header = 4, 18
    height = max(a.shape[0] for a, _ in pairs)
    width = max(a.shape[1] for a, _ in pairs)
    canvas = Image.new("RGB", (2 * width + gutter, header + len(pairs) * (height + gutter)), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), labels[0], fill=(230, 230, 230))
    draw.text((width + gutter + 4, 3), labels[1], fill=(230, 230, 230))
    for row, (a, b) in enumerate(pairs):
        y = header + row * (height + gutter)
        canvas.paste(Image.fromarray(a), (0, y))
        canvas.paste(Image.fromarray(b), (width + gutter, y))
    return canvas


def save_preview(pairs: list[tuple[np.ndarray, np.ndarray]], path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    with atomic_output(target) as tmp:
        side_by_side(pairs).save(tmp, format="PNG")
    return target
