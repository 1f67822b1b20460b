"""Pictures of a run, drawn with Pillow alone: sample grids and the loss-curve PNG."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from cyclestream.engine.atomic import atomic_output

GAP = 2
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] → (H, W, 3) uint8, as engine/backends/tensors.py converts model outputs."""
    return image.detach().float().cpu().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(
        1, 2, 0).numpy()


def grid(rows: Sequence[Sequence[torch.Tensor]], min_side: int = 96) -> np.ndarray:
    """Tiles of equal size, row by row, on white with a small gap: (H, W, 3) uint8.  Tiles smaller
    than ``min_side`` are enlarged by an integer factor (nearest neighbour) so tiny runs stay visible."""
    tiles = [[to_uint8(t) for t in row] for row in rows]
    scale = max(1, min_side // max(tiles[0][0].shape[:2]))
    if scale > 1:
        tiles = [[t.repeat(scale, 0).repeat(scale, 1) for t in row] for row in tiles]
    h, w = tiles[0][0].shape[:2]
    ncols = max(len(r) for r in tiles)
    out = np.full((len(tiles) * (h + GAP) - GAP, ncols * (w + GAP) - GAP, 3), 255, np.uint8)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            out[i * (h + GAP) : i * (h + GAP) + h, j * (w + GAP) : j * (w + GAP) + w] = tile
    return out


def read_log(path: Path) -> list[dict[str, float]]:
    """The JSON lines of a run's log.jsonl (a damaged last line is skipped)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def _smooth(xs: list[float], ys: list[float], bins: int) -> tuple[list[float], list[float]]:
    if len(xs) <= bins:
        return xs, ys
    per = len(xs) / bins
    out_x, out_y = [], []
    for b in range(bins):
        lo, hi = int(b * per), max(int((b + 1) * per), int(b * per) + 1)
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(ys[lo:hi]) / (hi - lo))
    return out_x, out_y


def loss_curves(
    entries: list[dict[str, float]], losses: Sequence[str], size: tuple[int, int] = (960, 540)
) -> Image.Image:
    """Each loss against the iteration (averaged into at most ~400 points), one colour per loss."""
    width, height = size
    left, right, top, bottom = 64, 170, 24, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    series = {}
    for name in losses:
        points = [(float(e["iteration"]), float(e[name])) for e in entries
                  if name in e and math.isfinite(float(e[name]))]
        if points:
            series[name] = _smooth([p[0] for p in points], [p[1] for p in points], min(400, width - left - right))
    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    if not series:
        draw.text((left + 10, top + 10), "no losses logged yet", fill=(0, 0, 0), font=font)
        return image
    x_lo = min(min(s[0]) for s in series.values())
    x_hi = max(max(s[0]) for s in series.values())
    y_lo = min(0.0, min(min(s[1]) for s in series.values()))
    y_hi = max(max(s[1]) for s in series.values())
    x_hi, y_hi = (x_hi if x_hi > x_lo else x_lo + 1), (y_hi if y_hi > y_lo else y_lo + 1)

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * (width - right - left),
                height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - bottom - top))

    for k in range(5):  # y grid and labels
        y = y_lo + (y_hi - y_lo) * k / 4
        _, py = at(x_lo, y)
        draw.line([left, py, width - right, py], fill=(225, 225, 225))
        draw.text((4, py - 6), f"{y:.3g}", fill=(0, 0, 0), font=font)
    for k in range(5):  # x labels
        x = x_lo + (x_hi - x_lo) * k / 4
        px, _ = at(x, y_lo)
        draw.text((px - 12, height - bottom + 6), f"{x:.0f}", fill=(0, 0, 0), font=font)
    draw.text(((width - right) // 2 - 20, height - 16), "iteration", fill=(0, 0, 0), font=font)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = [at(x, y) for x, y in zip(xs, ys, strict=True)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        else:
            draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
        ly = top + 16 * i
        draw.line([width - right + 10, ly + 6, width - right + 30, ly + 6], fill=colour, width=3)
        draw.text((width - right + 36, ly), name, fill=(0, 0, 0), font=font)
    return image


def write_loss_curves(log_path: Path, losses: Sequence[str], target: Path) -> Path:
    image = loss_curves(read_log(log_path), losses)
    with atomic_output(target) as tmp:
        image.save(tmp, format="PNG")
    return target
