"""Benchmarks: the model alone (per backend, precision, batch, size) and the whole pipeline by stage.

Every model row is compared with the official project's way of running — eager fp32, batch 1, one
image at a time — measured in the same run at the same size, and carries its error against that
baseline's output and its share of this machine's measured peak.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cyclestream.engine.backends import Backend, FrameShape, Precision, create_backend
from cyclestream.engine.backends.options import prepare_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.conditioning import require_image_only
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.bench_options import ModelBenchOptions, PipelineBenchOptions
from cyclestream.engine.jobs.options import TranslateOptions
from cyclestream.engine.jobs.roofline import Peaks, count_macs, measure_peaks, min_bytes_per_frame
from cyclestream.engine.jobs.translate import translate_video
from cyclestream.engine.machine import describe_machine
from cyclestream.engine.measure import frames_relative_l2, time_calls
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.remux import copy_head
from cyclestream.engine.media.sinks import VideoFileSink
from cyclestream.engine.media.sources import VideoFileSource
from cyclestream.engine.media.synthetic import synthetic_frame
from cyclestream.engine.models import GeneratorSpec, build_generator
from cyclestream.engine.options import resolve_device

log = logging.getLogger("cyclestream")

QUICK_SPEC = GeneratorSpec(ngf=8, n_blocks=2)  # bench model --quick without --model


@dataclass
class ModelRow:
    backend: str
    precision: str
    batch: int
    width: int
    height: int
    images_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    speedup: float | None = None  # vs the baseline row of the same size
    rel_l2: float | None = None  # vs the baseline's output
    gflops: float = 0.0
    peak_fraction: float | None = None
    describe: str = ""
    skipped: str | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class ModelBench:
    machine: dict[str, Any]
    peaks: Peaks
    model: dict[str, Any]
    rows: list[ModelRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "peaks": dataclasses.asdict(self.peaks),
            "model": self.model,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }


def _frames(batch: int, width: int, height: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([synthetic_frame(i, width, height) for i in range(batch)]))


def _prepare(model: LoadedModel, name: str, device: str, shape: FrameShape, precision: Precision) -> Backend:
    backend = create_backend(name, device)
    backend.prepare(model, shape, precision)
    return backend


def bench_model_file(path: str | os.PathLike[str] | None, *, options: ModelBenchOptions | None = None) -> ModelBench:
    """:func:`bench_model` of the generator file ``path``; without one, of the official resnet_9blocks with
    random weights (speed does not depend on them), or a tiny generator with ``options.quick``."""
    if path is not None:
        return bench_model(load_model(path), options=options)
    spec = QUICK_SPEC if options is not None and options.quick else GeneratorSpec()
    model = LoadedModel(build_generator(spec).eval(), spec, Path(spec.official_name), "random")
    return bench_model(model, options=options)


def bench_model(model: LoadedModel, *, options: ModelBenchOptions | None = None) -> ModelBench:
    """Every backend x precision x batch x size of ``options``, each beside the baseline (eager fp32 batch 1)."""
    require_image_only(model, "bench model")
    options = (options or ModelBenchOptions()).measured()
    sizes, min_time, device = options.sizes, options.min_time, resolve_device(options.device)
    peaks = measure_peaks(n=1024 if min_time < 0.5 else 2048, copy_mb=64 if min_time < 0.5 else 256)
    params = sum(p.numel() for p in model.generator.parameters())
    macs = {f"{w}x{h}": count_macs(model.generator, h, w, model.spec.size_multiple) for w, h in sizes}
    report = ModelBench(
        describe_machine(),
        peaks,
        {
            "architecture": model.spec.official_name,
            "spec": model.spec.to_dict(),
            "parameters": params,
            "macs_per_frame": macs,
        },
    )
    configs = [(b, p, n) for b in options.backends for p in options.precisions for n in options.batches]
    bar = tqdm(total=len(sizes) * (len(configs) + 1), unit="config", disable=not options.progress)
    for width, height in sizes:
        flop = 2 * macs[f"{width}x{height}"]
        baseline_backend = _prepare(model, "eager", device, FrameShape(1, height, width), "fp32")
        reference = baseline_backend.run(_frames(1, width, height))
        baseline = _measure(baseline_backend, "eager", "fp32", 1, width, height, options)
        baseline_backend.close()
        baseline.speedup, baseline.rel_l2 = 1.0, 0.0
        report.rows.append(baseline)
        bar.update(1)
        for name, precision, batch in configs:
            bar.set_description(f"{name} {precision} b{batch} {width}x{height}")
            if (name, precision, batch) in (("eager", "fp32", 1), ("auto", "fp32", 1)) and device == "cpu":
                bar.update(1)
                continue  # the baseline itself
            try:
                backend = _prepare(model, name, device, FrameShape(batch, height, width), precision)
            except CycleStreamError as e:
                report.rows.append(ModelRow(name, precision, batch, width, height, skipped=str(e)))
                bar.update(1)
                continue
            try:
                row = _measure(backend, name, precision, batch, width, height, options)
                row.rel_l2 = frames_relative_l2(backend.run(_frames(1, width, height)), reference)
            finally:
                backend.close()
            row.speedup = row.images_per_s / baseline.images_per_s if baseline.images_per_s else None
            report.rows.append(row)
            bar.update(1)
        for row in report.rows:
            if row.size == f"{width}x{height}" and not row.skipped:
                row.gflops = round(flop * row.images_per_s / 1e9, 1)
                peak = peaks.bf16_gflops if row.precision in ("bf16", "fp16") else peaks.fp32_gflops
                row.peak_fraction = round(row.gflops / peak, 3) if peak and device == "cpu" else None
    bar.close()
    report.model["min_bytes_per_frame"] = {f"{w}x{h}": min_bytes_per_frame(model.generator, h, w, batch=1) for w,
                                           h in sizes}
    if model.metadata.get("distillation"):
        report.model["official_baseline"] = _official_baseline(report, device, options)
    return report


def _official_baseline(report: ModelBench, device: str, options: ModelBenchOptions) -> dict[str, dict[str, float]]:
    """A distilled student is also measured against what it replaces: the official resnet_9blocks
    (random weights: speed does not depend on them) in eager fp32, batch 1, at each size, in this run.
    Returns ``{size: {"images_per_s": official, "best_student": ..., "speedup": best / official}}``."""
    from cyclestream.engine.jobs.verify import random_model

    official = random_model()
    out: dict[str, dict[str, float]] = {}
    for width, height in options.sizes:
        backend = _prepare(official, "eager", device, FrameShape(1, height, width), "fp32")
        try:
            row = _measure(backend, "eager", "fp32", 1, width, height, options)
        finally:
            backend.close()
        best = max((r.images_per_s for r in report.rows if r.size == row.size and not r.skipped), default=0.0)
        out[row.size] = {"images_per_s": round(row.images_per_s, 3), "best_student": round(best, 2),
                         "speedup": round(best / row.images_per_s, 1) if row.images_per_s else 0.0}
    return out


def _measure(
    backend: Backend,
    name: str,
    precision: str,
    batch: int,
    width: int,
    height: int,
    options: ModelBenchOptions,
) -> ModelRow:
    frames = _frames(batch, width, height)
    times = time_calls(lambda: backend.run(frames), options.warmup, options.repeats, options.min_time)
    median = statistics.median(times)
    return ModelRow(
        name,
        precision,
        batch,
        width,
        height,
        images_per_s=batch / median,
        p50_ms=1000 * median,
        p99_ms=1000 * float(np.percentile(times, 99)),
        describe=backend.describe(),
    )


# ----------------------------------------------------------------------------- pipeline


@dataclass
class PipelineBench:
    machine: dict[str, Any]
    input: str
    frames: int
    width: int
    height: int
    backend: str
    stage_fps: dict[str, float]
    pipeline_fps: float
    pipeline_frames: int  # the head of the clip the overlapped run used (ends at a keyframe)
    stage_busy_fps: dict[str, float]

    @property
    def efficiency(self) -> float:
        slowest = min(self.stage_fps.values())
        return self.pipeline_fps / slowest if slowest else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "efficiency": round(self.efficiency, 3)}


def bench_pipeline_file(input_path: Path, model_path: str | os.PathLike[str], *,
                        options: PipelineBenchOptions | None = None) -> PipelineBench:
    """:func:`bench_pipeline` with the generator file ``model_path``."""
    return bench_pipeline(input_path, load_model(model_path), options=options)


def bench_pipeline(input_path: Path, model: LoadedModel, *,
                   options: PipelineBenchOptions | None = None) -> PipelineBench:
    """decode only, model only, encode only — each alone — then decode ∥ model ∥ encode together."""
    options = options or PipelineBenchOptions()
    run, encode, max_frames, progress = options.run, options.encode, options.frames, options.progress
    # Decode alone (frames kept for the next two stages).
    t0 = time.perf_counter()
    source = VideoFileSource(input_path, size=run.size)
    frames = []
    cut = False  # True when the clip has more frames than max_frames
    try:
        for frame in source.frames():
            if max_frames and len(frames) >= max_frames:
                cut = True
                break
            frames.append(frame)
    finally:
        source.close()
    decode_s = time.perf_counter() - t0
    width, height = source.frame_size
    # Model alone, batched as the pipeline batches.
    backend = prepare_backend(model, run, height, width)
    outputs: list[np.ndarray] = []
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(frames), run.batch_size), desc="model only", disable=not progress, unit="batch"):
        batch = torch.from_numpy(np.stack([f.image for f in frames[i : i + run.batch_size]]))
        outputs.extend(backend.run(batch).numpy())
    model_s = time.perf_counter() - t0
    describe = backend.describe()
    backend.close()
    # Encode alone.
    with tempfile.TemporaryDirectory() as tmp:
        info = source.frame_info
        t0 = time.perf_counter()
        sink = VideoFileSink(Path(tmp) / "encode.mp4", info, options=encode)
        for frame, image in zip(frames, outputs, strict=True):
            sink.write(TranslatedFrame(image, dataclasses.replace(frame, side_packets=[])))
        sink.close()
        encode_s = time.perf_counter() - t0
        # All together: the real translate path (decode ∥ model ∥ encode), no preview.
        clip = input_path
        if cut:
            clip = Path(tmp) / f"head{input_path.suffix if input_path.suffix in ('.mp4', '.mkv') else '.mkv'}"
            copy_head(input_path, clip, max_frames)
        report = translate_video(
            clip,
            Path(tmp) / "pipeline.mp4",
            model,
            TranslateOptions(run=run, encode=encode, preview=False, progress=progress),
        )
    n = len(frames)
    stats = report.stats
    assert stats is not None
    return PipelineBench(
        describe_machine(),
        str(input_path),
        n,
        width,
        height,
        describe,
        stage_fps={"decode": round(n / decode_s, 2), "model": round(n / model_s, 2), "encode": round(n / encode_s, 2)},
        pipeline_fps=round(report.fps, 2),
        pipeline_frames=report.frames,
        stage_busy_fps={s.name: round(s.fps, 2) for s in stats.stages.values()},
    )
