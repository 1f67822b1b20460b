"""The file jobs: translate a video file, an image, or a folder of images with one generator.

Top to bottom for a video: load the model → prepare the backend for the frame size → open the
source → open the sink under a temporary name → run the pipeline (decode ∥ model ∥ encode) →
finish the file and rename it into place → write the preview.  Any error or Ctrl-C leaves no output.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends import Backend, FrameShape, Precision, create_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.errors import MediaError
from cyclestream.engine.images import load_rgb, save_rgb
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.probe import is_image
from cyclestream.engine.media.sinks import EncodeOptions, VideoFileSink, check_video_codec
from cyclestream.engine.media.sources import VideoFileSource
from cyclestream.engine.pipeline import FILE_POLICY, Pipeline
from cyclestream.engine.preview import PreviewCollector, preview_indices, save_preview
from cyclestream.engine.stats import PipelineStats

log = logging.getLogger("cyclestream")


@dataclass(frozen=True)
class RunOptions:
    """How to run the generator: shared by translate, stream and bench."""

    backend: str = "auto"
    device: str = "cpu"
    precision: Precision = "fp32"
    batch_size: int = 1
    size: tuple[int, int] | None = None  # (width, height) to scale frames to; None keeps their size
    kernels: str = "auto"  # fused instance-norm kernels (eager backend): auto, triton, reference, off


@dataclass(frozen=True)
class TranslateOptions:
    run: RunOptions = field(default_factory=RunOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    preview: Path | None = None  # where to write the side-by-side PNG; None: no preview
    progress: bool = True


@dataclass
class TranslateReport:
    output: Path
    frames: int
    seconds: float
    backend: str
    preview: Path | None = None
    warnings: list[str] = field(default_factory=list)
    stats: PipelineStats | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def prepare_backend(model: LoadedModel, options: RunOptions, height: int, width: int) -> Backend:
    backend = create_backend(options.backend, options.device, options.kernels)
    backend.prepare(model, FrameShape(options.batch_size, height, width), options.precision)
    log.info("backend: %s", backend.describe())
    return backend


def default_preview_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.preview.png")


def translate_video(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    model: LoadedModel,
    options: TranslateOptions,
) -> TranslateReport:
    output = Path(output_path)
    check_video_codec(options.encode.codec)
    source = VideoFileSource(input_path, size=options.run.size)
    info = source.info
    width, height = source.frame_size
    backend = prepare_backend(model, options.run, height, width)
    preview = PreviewCollector(preview_indices(info.expected_frames)) if options.preview else None
    pipeline = Pipeline(backend, options.run.batch_size, FILE_POLICY)
    try:
        with (
            atomic_output(output) as tmp,
            tqdm(
                total=info.expected_frames or None, unit="frame", desc=output.name, disable=not options.progress
            ) as bar,
        ):
            sink = VideoFileSink(
                tmp,
                dataclasses.replace(info, width=width, height=height),
                source.audio_streams,
                options.encode,
                output.name,
            )

            def write(frame: TranslatedFrame) -> None:
                sink.write(frame)
                if preview:
                    preview.offer(frame)
                bar.update(1)

            try:
                stats = pipeline.run(source.frames(), write)
                sink.close()
            except BaseException:
                sink.abort()
                raise
    finally:
        source.close()
        backend.close()
    report = TranslateReport(output, stats.frames, stats.wall, backend.describe(), stats=stats)
    if (damage := source.damage_report()) is not None:
        report.warnings.append(damage)
    if preview and preview.pairs and options.preview:
        report.preview = save_preview(preview.pairs, options.preview)
    return report


def _image_jobs(input_path: Path, output: Path) -> list[tuple[Path, Path]]:
    if input_path.is_dir():
        files = sorted(p for p in input_path.rglob("*") if p.is_file() and is_image(p))
        if not files:
            raise MediaError(f"no images in folder {input_path}")
        if output.exists() and not output.is_dir():
            raise MediaError(f"input is a folder, so the output must be a folder too: {output}")
        return [(p, output / p.relative_to(input_path)) for p in files]
    if output.is_dir():
        return [(input_path, output / input_path.name)]
    return [(input_path, output)]


def translate_images(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    model: LoadedModel,
    options: TranslateOptions,
) -> TranslateReport:
    """One image, or every image below a folder (same relative names in the output folder)."""
    jobs = _image_jobs(Path(input_path), Path(output_path))
    backends: dict[tuple[int, int], Backend] = {}  # one prepared backend per image size
    seconds = 0.0
    try:
        for src, dst in tqdm(jobs, unit="image", disable=not options.progress or len(jobs) < 2):
            image = load_rgb(src, options.run.size)
            key = (image.shape[0], image.shape[1])
            if key not in backends:
                backends[key] = prepare_backend(model, dataclasses.replace(options.run, batch_size=1), *key)
            t0 = time.perf_counter()
            out = backends[key].run(torch.from_numpy(image[None].copy()))[0].numpy()
            seconds += time.perf_counter() - t0
            save_rgb(out, dst)
    finally:
        for backend in backends.values():
            backend.close()
    return TranslateReport(Path(output_path), len(jobs), seconds, next(iter(backends.values())).describe())


def translate(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    options: TranslateOptions,
) -> TranslateReport:
    """Translate a video file, an image, or a folder of images; the kind is told from the input."""
    src = Path(input_path)
    if not src.exists():
        raise MediaError(f"input not found: {src}")
    model = load_model(model_path)
    if src.is_dir() or is_image(src):
        return translate_images(src, output_path, model, options)
    return translate_video(src, output_path, model, options)
