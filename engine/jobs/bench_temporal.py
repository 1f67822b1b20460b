"""`bench temporal`: how much each --temporal method reduces flicker, and what it costs.

The model runs once per frame; every method then post-processes the same per-frame outputs, so the
methods are compared on identical model results.  Regions are told from the *clean* input (before
any noise this bench adds): still where its 5x5-mean grey change is under 3 levels, moving where it
is over 10.

- flicker: mean |out_t − out_{t−1}| over still regions (levels; lower is steadier)
- warp error: mean |out_t − warp(out_{t−1})| along the inputs' optical flow (OpenCV DIS), where the
  flow explains the input (warped input error under 10 levels); None without OpenCV
- PSNR to per-frame: over whole frames, over moving regions, and on the first frame after each cut
- ms/frame: the stabiliser's own cost, beside the model's
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import itertools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends import Backend
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.errors import MediaError
from cyclestream.engine.jobs.bench_options import STATS_LEVER, TemporalBenchOptions
from cyclestream.engine.media.sources import VideoFileSource
from cyclestream.engine.temporal import BlendSettings, DisFlow, box_blur, grey, is_cut, make_stabiliser

STILL_BELOW, MOVING_ABOVE, VALID_WARP_BELOW = 3.0, 10.0, 10.0
PICTURE_FRAMES = 5  # read for the picture: the frame before and the four it shows


@dataclass
class TemporalRow:
    method: str
    flicker: float
    warp_error: float | None
    psnr: float
    psnr_moving: float | None
    psnr_after_cut: float | None
    ms_per_frame: float


@dataclass
class TemporalReport:
    clip: str
    frames: int
    size: tuple[int, int]
    noise: float
    model_ms_per_frame: float
    cuts: list[int] = field(default_factory=list)
    rows: list[TemporalRow] = field(default_factory=list)

    def row(self, method: str) -> TemporalRow:
        return next(r for r in self.rows if r.method == method)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TemporalBench:
    """``bench temporal`` of several clips: a report per clip and noise level, and the picture if asked."""

    reports: list[TemporalReport]
    picture: Path | None = None

    def table(self, markdown: bool = False) -> str:
        return format_table(self.reports, markdown=markdown)

    def to_json(self) -> dict[str, Any]:
        return {"reports": [r.to_json() for r in self.reports]}


def add_noise(frames: Sequence[np.ndarray], sigma: float, seed: int = 0) -> list[np.ndarray]:
    """Sensor-like noise: independent Gaussian per pixel and channel, σ in levels."""
    if sigma <= 0:
        return list(frames)
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape) + 0.5, 0, 255).astype(np.uint8) for f in frames]


def _change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return box_blur(np.abs(grey(a) - grey(b)), 2)


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return None
        diff = diff[mask]
    mse = float(diff.mean())
    return 100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _combine_psnr(values: list[float | None]) -> float | None:
    """PSNR of the mean squared error over several frames (not the mean of PSNRs)."""
    mses = [255.0**2 / 10 ** (v / 10) for v in values if v is not None]
    if not mses:
        return None
    mse = sum(mses) / len(mses)
    return 100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _flow() -> DisFlow | None:
    """The flow for the warping error, at DIS's finer preset; None without OpenCV."""
    return DisFlow("MEDIUM") if importlib.util.find_spec("cv2") is not None else None


def measure(
    clean: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray],
    per_frame: Sequence[np.ndarray],
    *,
    methods: Sequence[str],
    precomputed: dict[str, tuple[list[np.ndarray], float]] | None = None,
) -> tuple[list[TemporalRow], list[int]]:
    """Score each method on the same per-frame outputs; returns the rows and the cut frames.
    ``precomputed``: outputs of methods that change the model run itself (name → outputs, extra seconds)."""
    n = len(per_frame)
    settings = BlendSettings()
    cuts = [t for t in range(1, n) if is_cut(clean[t], clean[t - 1], settings)]
    changes = [None] + [_change(clean[t], clean[t - 1]) for t in range(1, n)]
    flow = _flow()
    flows = [None] * n
    if flow is not None:
        for t in range(1, n):
            if t not in cuts:
                warped_in, = flow.warp_back(clean[t], clean[t - 1], clean[t - 1])
                valid = np.abs(grey(warped_in) - grey(clean[t])) < VALID_WARP_BELOW
                flows[t] = (valid, clean[t], clean[t - 1])
    rows = []
    for method in methods:
        if precomputed and method in precomputed:
            outputs, spent = precomputed[method]
        else:
            stabilise = make_stabiliser(method)
            outputs, spent = [], 0.0
            for src, out in zip(inputs, per_frame, strict=True):
                t0 = time.perf_counter()
                outputs.append(out if stabilise is None else stabilise(src, out))
                spent += time.perf_counter() - t0
        flicker, warp_errors = [], []
        for t in range(1, n):
            if t in cuts:
                continue
            still = changes[t] < STILL_BELOW
            if still.any():
                flicker.append(float(np.abs(outputs[t].astype(np.float32) - outputs[t - 1])[still].mean()))
            if flows[t] is not None:
                valid, cur, prev = flows[t]
                warped_out, = flow.warp_back(cur, prev, outputs[t - 1])
                warp_errors.append(float(np.abs(outputs[t].astype(np.float32) - warped_out)[valid].mean()))
        moving = [None] + [_psnr(outputs[t], per_frame[t], changes[t] > MOVING_ABOVE) for t in range(1, n)]
        rows.append(TemporalRow(
            method=method,
            flicker=float(np.mean(flicker)) if flicker else 0.0,
            warp_error=float(np.mean(warp_errors)) if warp_errors else None,
            psnr=_combine_psnr([_psnr(o, p) for o, p in zip(outputs, per_frame, strict=True)]) or 100.0,
            psnr_moving=_combine_psnr(moving),
            psnr_after_cut=_combine_psnr([_psnr(outputs[t], per_frame[t]) for t in cuts]),
            ms_per_frame=1000 * spent / max(1, n),
        ))
    return rows, cuts


def format_table(reports: Sequence[TemporalReport], markdown: bool = False) -> str:
    head = ["clip", "noise σ", "method", "still flicker", "warp error", "PSNR to per-frame (dB)",
            "PSNR moving", "PSNR after cut", "ms/frame (model)"]

    def num(v: float | None, fmt: str = "{:.2f}") -> str:
        return "–" if v is None else fmt.format(v)

    def db(v: float | None) -> str:
        return "∞" if v is not None and v >= 100 else num(v, "{:.1f}")

    lines = []
    for r in reports:
        off = r.row("off") if any(x.method == "off" for x in r.rows) else None
        for row in r.rows:
            rel = f" ({100 * row.flicker / off.flicker:.0f}%)" if off and off.flicker > 0 and row is not off else ""
            lines.append([r.clip, f"{r.noise:g}", row.method, num(row.flicker) + rel, num(row.warp_error),
                          db(row.psnr), db(row.psnr_moving), db(row.psnr_after_cut),
                          f"{row.ms_per_frame:.1f} ({r.model_ms_per_frame:.0f})"])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *lines])


def read_frames(path: str | Path, frames: int, size: tuple[int, int] | None) -> list[np.ndarray]:
    """The first ``frames`` frames of a video, upright RGB (scaled to ``size`` if given)."""
    source = VideoFileSource(path, size=size)
    try:
        return [f.image for f in itertools.islice(source.frames(), frames)]
    finally:
        source.close()


def read_clip(path: str | Path, frames: int, size: tuple[int, int] | None) -> list[np.ndarray]:
    """:func:`read_frames`, refusing a clip with no frame."""
    read = read_frames(path, frames, size)
    if not read:
        raise MediaError(f"no frame of {path} could be read")
    return read


def run_model(backend: Backend, frames: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Per-frame outputs (one frame per call, as a live stream runs) and the model's ms/frame."""
    outputs, t0 = [], time.perf_counter()
    for frame in frames:
        outputs.append(backend.run(torch.from_numpy(frame[None].copy()))[0].numpy())
    return outputs, 1000 * (time.perf_counter() - t0) / max(1, len(frames))


def _frame_by_frame(model: LoadedModel, run: RunOptions, frames: Sequence[np.ndarray]) -> Backend:
    """A backend for one frame per call (as a live stream runs) at the size of ``frames``."""
    height, width = frames[0].shape[:2]
    return prepare_backend(model, dataclasses.replace(run, batch_size=1), height, width)


def bench_temporal_files(clips: Sequence[str | Path], model_path: str | os.PathLike[str], *,
                         options: TemporalBenchOptions | None = None, picture: Path | None = None) -> TemporalBench:
    """:func:`bench_temporal` of each clip with the generator file ``model_path``, and with ``picture`` the
    :func:`temporal_picture` of the first clip at the largest noise level."""
    options = options or TemporalBenchOptions()
    model = load_model(model_path)
    reports = [r for clip in clips for r in bench_temporal(clip, model, options=options)]
    if picture is not None:
        frames = add_noise(read_clip(clips[0], PICTURE_FRAMES, options.run.size), max(options.noise))
        backend = _frame_by_frame(model, options.run, frames)
        try:
            temporal_picture(frames, [m for m in options.methods if m != STATS_LEVER], backend, picture)
        finally:
            backend.close()
    return TemporalBench(reports, picture)


def bench_temporal(clip: str | Path, model: LoadedModel, *,
                   options: TemporalBenchOptions | None = None) -> list[TemporalReport]:
    """One report per noise level: the clip (with added noise σ) through the model once, then every method."""
    options = options or TemporalBenchOptions()
    methods = options.methods
    clean = read_clip(clip, options.frames, options.run.size)
    height, width = clean[0].shape[:2]
    backend = _frame_by_frame(model, options.run, clean)
    reports = []
    try:
        for sigma in tqdm(options.noise, desc=Path(clip).name, unit="noise level", disable=not options.progress):
            inputs = add_noise(clean, sigma)
            per_frame, model_ms = run_model(backend, inputs)
            precomputed = {}
            if STATS_LEVER in methods:
                t0 = time.perf_counter()
                smoothed = smoothed_stats_outputs(model, inputs)
                extra = max(0.0, time.perf_counter() - t0 - model_ms * len(inputs) / 1000)
                precomputed[STATS_LEVER] = (smoothed, extra)
            rows, cuts = measure(clean, inputs, per_frame, methods=methods, precomputed=precomputed)
            reports.append(TemporalReport(Path(clip).name, len(clean), (width, height), sigma, model_ms, cuts, rows))
    finally:
        backend.close()
    return reports


def temporal_picture(
    frames: Sequence[np.ndarray], methods: Sequence[str], backend: Backend, path: Path, *, start: int = 1,
    count: int = 4,
) -> Path:
    """Consecutive frames, a row each for the input and every method's output, then each method's
    frame-to-frame change ×8 (flicker shows as speckle; motion as outlines)."""
    per_frame, _ = run_model(backend, frames[: start + count])
    rows: list[tuple[str, list[np.ndarray]]] = [("input", list(frames[start : start + count]))]
    changes = []
    for method in methods:
        stabilise = make_stabiliser(method)
        outs = [o if stabilise is None else stabilise(f, o) for f, o in zip(frames, per_frame, strict=False)]
        rows.append((f"output, --temporal {method}", outs[start : start + count]))
        diff = [np.clip(8 * np.abs(outs[t].astype(np.int16) - outs[t - 1]), 0, 255).astype(np.uint8)
                for t in range(start, start + count)]
        changes.append((f"change from the frame before x8, {method}", diff))
    return save_grid(rows + changes, path)


def save_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]], path: Path) -> Path:
    """Labelled rows of equally sized images as one PNG."""
    h, w = rows[0][1][0].shape[:2]
    gutter, header = 4, 16
    canvas = Image.new("RGB", (len(rows[0][1]) * (w + gutter), len(rows) * (h + header)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        y = r * (h + header)
        draw.text((2, y + 2), label, fill="black")
        for c, image in enumerate(images):
            canvas.paste(Image.fromarray(image), (c * (w + gutter), y + header))
    with atomic_output(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


class _SmoothedStatsNorm(torch.nn.Module):
    """Instance norm whose per-channel mean and variance are a running average over the frames seen
    (the first lever the issue names); ``keep`` is the previous average's weight."""

    def __init__(self, eps: float, keep: float) -> None:
        super().__init__()
        self.eps, self.keep = eps, keep
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mean, var = xf.mean((2, 3), keepdim=True), xf.var((2, 3), unbiased=False, keepdim=True)
        if self.mean is not None and self.var is not None and self.mean.shape == mean.shape:
            mean = self.keep * self.mean + (1 - self.keep) * mean
            var = self.keep * self.var + (1 - self.keep) * var
        self.mean, self.var = mean, var
        return ((xf - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)


def smoothed_stats_outputs(model: LoadedModel, frames: Sequence[np.ndarray], keep: float = 0.8) -> list[np.ndarray]:
    """Per-frame outputs of the eager generator with instance-norm statistics averaged across frames,
    restarted at scene cuts: the statistics lever, measured beside the output-blending one."""
    from cyclestream.engine.backends.tensors import from_model_output, to_model_input
    from cyclestream.engine.models.norm import InstanceNorm2d

    generator = copy.deepcopy(model.generator).eval()
    norms = []
    for module in list(generator.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, InstanceNorm2d):
                smoothed = _SmoothedStatsNorm(child.eps, keep)
                setattr(module, child_name, smoothed)
                norms.append(smoothed)
    settings, outputs, previous = BlendSettings(), [], None
    with torch.inference_mode():
        for frame in frames:
            if previous is not None and is_cut(frame, previous, settings):
                for norm in norms:
                    norm.mean = norm.var = None
            previous = frame
            x = torch.from_numpy(frame[None].copy())
            y = generator(to_model_input(x, model.spec.size_multiple, value_range=model.family.value_range))
            outputs.append(from_model_output(y, *frame.shape[:2], value_range=model.family.value_range)[0].numpy())
    return outputs
