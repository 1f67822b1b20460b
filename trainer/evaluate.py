"""Score a generator on a dataset's held-out pairs: PSNR and SSIM of translated testA against testB.

The held-out split of an emoji dataset keeps its pairs (``testA/NAME.png`` and ``testB/NAME.png`` are
the same emoji in the two styles), so a translation can be compared with the truth.  Every score is
reported beside the identity baseline (untranslated testA against testB): a generator that learnt
the style must beat it.  A grid PNG shows some pairs: rows input | translated | target.

PSNR is on uint8 RGB (capped at ``PSNR_CAP`` dB for identical images, so averages stay finite);
SSIM is Wang et al. 2004 with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, computed
per channel over the valid region and averaged.  Both are averaged over the pairs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.media.images import load_rgb, save_rgb
from cyclestream.engine.media.probe import is_image
from cyclestream.trainer.datasets import DatasetError
from cyclestream.trainer.datasets.emoji import read_dataset_info
from cyclestream.trainer.evaluate_options import Direction, EvaluateOptions

PSNR_CAP = 100.0  # dB reported for identical images


# ----------------------------------------------------------------------------- metrics


def _as_float(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W, C) uint8 → (1, C, H, W) float64 in 0..255."""
    t = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))  # a writable copy
    if t.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {tuple(t.shape)}")
    return t.to(torch.float64).permute(2, 0, 1).unsqueeze(0)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, cap: float = PSNR_CAP) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (``cap`` when they are identical)."""
    x, y = _as_float(a), _as_float(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    mse = float(torch.mean((x - y) ** 2))
    return cap if mse == 0 else min(cap, 10 * math.log10(255.0**2 / mse))


def gaussian_kernel(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(size,) float64 Gaussian weights summing to 1."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(size, size) float64 Gaussian window summing to 1 (applied as two 1-D passes)."""
    g = gaussian_kernel(size, sigma)
    return torch.outer(g, g)


def _blur_valid(t: torch.Tensor, weights: list[float], dim: int) -> torch.Tensor:
    """1-D correlation with ``weights`` along ``dim``, valid region only: a weighted sum of shifted
    slices (much faster on the CPU than a grouped float64 convolution, same arithmetic)."""
    n = t.shape[dim] - len(weights) + 1
    out = weights[0] * t.narrow(dim, 0, n)
    for k, w in enumerate(weights[1:], start=1):
        out = out + w * t.narrow(dim, k, n)
    return out


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *, window: int = 11, sigma: float = 1.5,
         data_range: float = 255.0) -> float:
    """Structural similarity of two (H, W, C) images (1.0 when identical)."""
    x, y = _as_float(a), _as_float(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    channels, height, width = x.shape[1:]
    size = min(window, height, width)
    size -= 1 - size % 2  # odd
    # The five local means (x, y, x², y², xy) in one separable Gaussian blur over the valid region.
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    g = gaussian_kernel(size, sigma).tolist()
    blurred = _blur_valid(_blur_valid(stack, g, dim=3), g, dim=2)
    mu_x, mu_y, xx, yy, xy = blurred.split(channels, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return float((num / den).mean())


# ----------------------------------------------------------------------------- the dataset's pairs


def find_pairs(data: str | os.PathLike[str], direction: Direction = "AtoB", limit: int | None = None,
               ) -> list[tuple[str, Path, Path]]:
    """(name, input, target) for every image name in both test folders, sorted by name."""
    data = Path(data)
    if not data.is_dir():
        raise DatasetError(f"dataset folder not found: {data}")
    folders = [data / "testA", data / "testB"]
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise DatasetError(
            f"{data} has no {' or '.join(missing)} folder; "
            f"build a dataset with: cyclestream data emoji --out {data}"
        )
    if direction == "BtoA":
        folders.reverse()
    inputs = {p.stem: p for p in folders[0].iterdir() if p.is_file() and is_image(p)}
    targets = {p.stem: p for p in folders[1].iterdir() if p.is_file() and is_image(p)}
    names = sorted(set(inputs) & set(targets))
    if not names:
        raise DatasetError(f"no image in {folders[0]} has a same-named counterpart in {folders[1]}")
    if limit is not None:
        names = names[:limit]
    return [(n, inputs[n], targets[n]) for n in names]


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Scores:
    psnr: float
    ssim: float


@dataclass
class EvaluationReport:
    model: Path
    data: Path
    direction: Direction
    pairs: int
    size: tuple[int, int]  # (width, height) of the first pair
    backend: str
    translated: Scores
    identity: Scores
    seconds: float
    grid: Path | None = None
    domains: dict[str, str] = field(default_factory=dict)
    mean_target: Scores | None = None  # the mean training target image, the same for every input

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "data": str(self.data),
            "direction": self.direction,
            "domains": self.domains,
            "pairs": self.pairs,
            "size": list(self.size),
            "backend": self.backend,
            "translated": {"psnr": round(self.translated.psnr, 4), "ssim": round(self.translated.ssim, 5)},
            "identity": {"psnr": round(self.identity.psnr, 4), "ssim": round(self.identity.ssim, 5)},
            "mean_target": (
                {"psnr": round(self.mean_target.psnr, 4), "ssim": round(self.mean_target.ssim, 5)}
                if self.mean_target else None
            ),
            "psnr_cap": PSNR_CAP,
            "seconds": round(self.seconds, 3),
            "grid": str(self.grid) if self.grid else None,
        }


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _translate_all(model: LoadedModel, inputs: list[np.ndarray], run: RunOptions, progress: bool,
                   ) -> tuple[list[np.ndarray], str]:
    """Every input translated, in batches of ``run.batch_size`` (one prepared backend per image size)."""
    outputs: list[np.ndarray] = [inputs[0]] * len(inputs)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, x in enumerate(inputs):
        by_shape.setdefault((x.shape[0], x.shape[1]), []).append(i)
    describe = ""
    with tqdm(total=len(inputs), unit="pair", disable=not progress) as bar:
        for (height, width), indices in by_shape.items():
            batch = min(run.batch_size, len(indices))
            backend = prepare_backend(model, dataclasses.replace(run, batch_size=batch, size=None), height, width)
            try:
                describe = backend.describe()
                for start in range(0, len(indices), batch):
                    chunk = indices[start : start + batch]
                    frames = torch.from_numpy(np.stack([inputs[i] for i in chunk]))
                    for i, out in zip(chunk, backend.run(frames).numpy(), strict=True):
                        outputs[i] = out
                    bar.update(len(chunk))
            finally:
                backend.close()
    return outputs, describe


def mean_target_image(data: Path, direction: Direction, size: tuple[int, int]) -> np.ndarray | None:
    """The pixelwise mean of the training targets (trainB for AtoB) at ``size`` (w, h), or None.

    A constant prediction that knows the target style's average picture and nothing of the input:
    a model that learned the style must beat it as well as the identity.
    """
    folder = data / ("trainB" if direction == "AtoB" else "trainA")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image(p)) if folder.is_dir() else []
    if not paths:
        return None
    total = np.zeros((size[1], size[0], 3))
    for path in paths:
        total += load_rgb(path, size)
    return (total / len(paths)).round().astype(np.uint8)


def _scores(outputs: list[np.ndarray], targets: list[np.ndarray]) -> Scores:
    return Scores(_mean([psnr(o, y) for o, y in zip(outputs, targets, strict=True)]),
                  _mean([ssim(o, y) for o, y in zip(outputs, targets, strict=True)]))


def evaluate(model_path: str | os.PathLike[str], data: str | os.PathLike[str],
             options: EvaluateOptions | None = None) -> EvaluationReport:
    """Translate the held-out inputs with the model and score them against their targets."""
    options = options or EvaluateOptions()
    t0 = time.perf_counter()
    pairs = find_pairs(data, options.direction, options.limit)
    model = load_model(model_path)
    inputs = [load_rgb(src, options.run.size) for _name, src, _dst in pairs]
    targets = [load_rgb(dst, (x.shape[1], x.shape[0])) for (_n, _s, dst), x in zip(pairs, inputs, strict=True)]
    outputs, describe = _translate_all(model, inputs, options.run, options.progress)
    translated, identity = _scores(outputs, targets), _scores(inputs, targets)
    means: dict[tuple[int, int], np.ndarray | None] = {}
    for y in targets:
        size = (y.shape[1], y.shape[0])
        if size not in means:
            means[size] = mean_target_image(Path(data), options.direction, size)
    constant = [means[(y.shape[1], y.shape[0])] for y in targets]
    mean_target = None if any(m is None for m in constant) else _scores(constant, targets)  # type: ignore[arg-type]
    info = read_dataset_info(data)
    domains = info.get("domains") if isinstance(info.get("domains"), dict) else {}
    report = EvaluationReport(
        Path(model_path), Path(data), options.direction, len(pairs), (inputs[0].shape[1], inputs[0].shape[0]),
        describe, translated, identity, 0.0, domains=domains, mean_target=mean_target,
    )
    if options.grid is not None and options.grid_examples > 0:
        picks = np.linspace(0, len(pairs) - 1, min(options.grid_examples, len(pairs))).round().astype(int)
        report.grid = save_grid([(inputs[i], outputs[i], targets[i]) for i in sorted(set(picks))], options.grid)
    report.seconds = time.perf_counter() - t0
    return report


# ----------------------------------------------------------------------------- showing it


def _label_font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=max(10, min(18, height // 6)))
    except (OSError, TypeError):  # Pillow without FreeType
        return ImageFont.load_default()


def save_grid(examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], path: str | os.PathLike[str],
              gap: int = 4) -> Path:
    """A PNG with one column per example and three rows: input, translated, target."""
    h, w = examples[0][0].shape[:2]
    labels = ("input", "translated", "target")
    font = _label_font(h)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(int(measure.textlength(t, font=font)) for t in labels) + 2 * gap
    grid = Image.new("RGB", (label_w + len(examples) * (w + gap) + gap, 3 * (h + gap) + gap), (200, 200, 200))
    draw = ImageDraw.Draw(grid)
    for row, label in enumerate(labels):
        top = gap + row * (h + gap)
        draw.text((gap, top + h // 2), label, fill=(0, 0, 0), font=font, anchor="lm")
        for col, images in enumerate(examples):
            cell = Image.fromarray(images[row])
            if cell.size != (w, h):
                cell = cell.resize((w, h), Image.Resampling.LANCZOS)
            grid.paste(cell, (label_w + gap + col * (w + gap), top))
    return save_rgb(np.asarray(grid), path)


def format_report(report: EvaluationReport) -> str:
    """A small table for the terminal."""
    names = report.domains
    a, b = (names.get("A", "A"), names.get("B", "B"))
    src, dst = (a, b) if report.direction == "AtoB" else (b, a)
    lines = [
        f"{report.model.name} on {report.pairs} held-out pairs of {report.data} ({src} → {dst}), "
        f"{report.size[0]}x{report.size[1]}, {report.backend}, {report.seconds:.1f} s",
        f"  {'':22}{'PSNR (dB)':>10}{'SSIM':>9}",
        f"  {'identity (input)':22}{report.identity.psnr:>10.2f}{report.identity.ssim:>9.4f}",
    ]
    if report.mean_target:
        lines.append(f"  {'mean target image':22}{report.mean_target.psnr:>10.2f}{report.mean_target.ssim:>9.4f}")
    lines.append(f"  {'translated':22}{report.translated.psnr:>10.2f}{report.translated.ssim:>9.4f}")
    if report.grid:
        lines.append(f"grid {report.grid} (rows: input | translated | target)")
    return "\n".join(lines)


__all__ = [
    "PSNR_CAP",
    "EvaluateOptions",
    "EvaluationReport",
    "Scores",
    "evaluate",
    "find_pairs",
    "format_report",
    "gaussian_kernel",
    "gaussian_window",
    "mean_target_image",
    "psnr",
    "save_grid",
    "ssim",
]
