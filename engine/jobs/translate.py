"""The file jobs: translate a video file, an image, or a folder of images with one generator.

Top to bottom for a video: load the model → prepare the backend for the frame size → open the
source → open the sink under a temporary name → run the pipeline (decode ∥ model ∥ encode) →
finish the file and rename it into place → write the preview.  Any error or Ctrl-C leaves no output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends import Backend
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.errors import MediaError, OutputError
from cyclestream.engine.jobs.options import TranslateOptions
from cyclestream.engine.media.animation_video import is_animation_video_path, write_animation_video
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.images import (
    Picture,
    check_writable,
    find_images,
    output_format,
    read_picture,
    write_picture,
)
from cyclestream.engine.media.pipes import STDIN_NAME, STDOUT_NAME, check_stdout, is_stdio, stdout_format, stdout_writer
from cyclestream.engine.media.preview import PreviewCollector, preview_indices, save_preview
from cyclestream.engine.media.probe import is_image
from cyclestream.engine.media.sinks import VideoFileSink, check_video_codec, rebase_note
from cyclestream.engine.media.sources import VideoFileSource
from cyclestream.engine.paths import check_not_input
from cyclestream.engine.pipeline import FILE_POLICY, Pipeline
from cyclestream.engine.stats import PipelineStats
from cyclestream.engine.temporal import make_stabiliser

log = logging.getLogger("cyclestream")


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


def default_preview_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.preview.png")


def preview_path(options: TranslateOptions, output: Path) -> Path | None:
    """Where ``options.preview`` puts the side-by-side picture of ``output``: beside it, at a path, or nowhere."""
    if options.preview is True:
        if is_stdio(output):
            log.debug("no preview for standard output (--preview PATH writes one)")
            return None
        return default_preview_path(output)
    return options.preview or None


# prepare_backend's signature: a caller that translates many files passes its own (which keeps prepared
# backends and closes them itself) as ``prepare=``; the file jobs then leave the backends open.
PrepareBackend = Callable[[LoadedModel, RunOptions, int, int], Backend]


def translate_video(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    model: LoadedModel,
    options: TranslateOptions,
    *,
    source: VideoFileSource | None = None,
    prepare: PrepareBackend | None = None,
) -> TranslateReport:
    """``source``: an opened source to read instead of ``input_path`` (a segment of it; closed here);
    frames it marks ``warmup`` are translated and stabilised but not written.  ``prepare``: see
    :data:`PrepareBackend`."""
    output = Path(output_path)
    check_video_codec(options.encode.codec)
    from_stdin, to_stdout = is_stdio(input_path), is_stdio(output)  # `-`: a pipe (media/pipes.py)
    encode = options.encode
    if to_stdout:
        encode = dataclasses.replace(encode, container_format=stdout_format(options.format))
    if source is None:
        in_format = options.format if from_stdin and not to_stdout else None
        source = VideoFileSource(input_path, size=options.run.size, format=in_format,
                                 deinterlace=options.deinterlace)  # fmt: skip
    try:
        info = source.frame_info  # decodes the first frame: upright size, colour tags
        if prepare is None:  # int8 is calibrated on this video's first frames (unless --calibration names others)
            calibration = None if from_stdin else Path(input_path)  # a pipe is read once
            backend = prepare_backend(model, options.run, info.height, info.width, calibration=calibration)
        else:
            backend = prepare(model, options.run, info.height, info.width)
    except BaseException:
        source.close()
        raise
    preview_to = preview_path(options, output)
    preview = PreviewCollector(preview_indices(info.expected_frames)) if preview_to else None
    pipeline = Pipeline(backend, options.run.batch_size, FILE_POLICY)
    stabilise = make_stabiliser(options.temporal)
    label = STDOUT_NAME if to_stdout else str(output)
    try:
        with (
            contextlib.nullcontext(stdout_writer()) if to_stdout else atomic_output(output) as tmp,
            tqdm(
                total=info.expected_frames or None, unit="frame", desc=output.name, disable=not options.progress
            ) as bar,
        ):
            sink = VideoFileSink(tmp, info, passthrough=source.passthrough, options=encode, label=label,
                                 rebase_from=source.start_time)  # fmt: skip

            def write(frame: TranslatedFrame) -> None:
                if stabilise is not None:
                    frame = TranslatedFrame(stabilise(frame.source.image, frame.image), frame.source)
                if frame.source.warmup:
                    return
                sink.write(frame)
                if preview:
                    preview.offer(frame)
                bar.update(1)

            try:
                stats = pipeline.run(source.frames(), write)
                sink.mux_side(source.trailing_packets)
                sink.close()
            except BaseException:
                sink.abort()
                raise
    finally:
        source.close()
        if prepare is None:
            backend.close()
    report = TranslateReport(output, stats.frames, stats.wall, backend.describe(), stats=stats)
    read_from = STDIN_NAME if from_stdin else str(input_path)
    notes = (source.damage_report(), sink.timestamp_note(read_from), rebase_note(read_from, sink.rebased, label),
             sink.hdr_note(read_from), sink.alpha_note(read_from, info))
    report.warnings += [note for note in notes if note]
    report.warnings += source.notes()
    if preview and preview.pairs and preview_to:
        report.preview = save_preview(preview.pairs, preview_to)
    return report


class ImagesFailed(MediaError):
    """Some images of a folder could not be translated; the others were written.  ``report`` says what was
    written, with one warning line per failed image."""

    def __init__(self, report: TranslateReport, failed: int, total: int) -> None:
        super().__init__(f"{failed} of {total} images could not be translated (listed above); "
                         f"the other {total - failed} were written to {report.output}")
        self.report = report


def _image_jobs(input_path: Path, output: Path) -> list[tuple[Path, Path]]:
    if input_path.is_dir():
        if output.exists() and not output.is_dir():
            raise MediaError(f"input is a folder, so the output must be a folder too: {output}")
        files = find_images(input_path, exclude=output)
        if not files:
            raise MediaError(f"no images in folder {input_path}")
        return [(p, output / p.relative_to(input_path)) for p in files]
    if output.is_dir():
        return [(input_path, output / input_path.name)]
    return [(input_path, output)]


def _check_video_target(picture: Picture, dst: Path, options: TranslateOptions) -> None:
    if not picture.animated:
        raise MediaError(f"cannot write a still image as '{dst.suffix}': {dst} (use .png, .jpg, .webp, .tif, "
                         ".gif or .bmp; an animation can be written as .mp4, .mkv, .mov or .webm)")
    check_video_codec(options.encode.codec)


def _write_as_video(picture: Picture, translated: list[np.ndarray], dst: Path, options: TranslateOptions) -> list[str]:
    """An animation as a video file (atomically); what the video cannot hold, one line each."""
    with atomic_output(dst) as tmp:
        write_animation_video(picture.frames, translated, picture.durations, tmp, encode=options.encode, label=str(dst))
    lost = ["transparency not kept (a video has none)"] if picture.alphas else []
    if picture.loop is not None:
        lost.append("loop count not kept (a video plays once)")
    return lost


def _summary(losses: dict[str, list[str]]) -> list[str]:
    """One line per thing not kept, naming the files: 'EXIF not kept (BMP cannot hold it): a.bmp, b.bmp'."""
    return [
        f"{what}: {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        for what, names in losses.items()
    ]


def translate_images(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    model: LoadedModel,
    options: TranslateOptions,
    *,
    prepare: PrepareBackend | None = None,
) -> TranslateReport:
    """One image, or every image below a folder (same relative names in the output folder).  Animations
    (GIF, WebP, APNG) are translated frame by frame (``--temporal`` across their frames, as in a video)
    and written back as animations.  In a folder an image
    that fails does not stop the others: they are written, then :class:`ImagesFailed` lists the failures.
    Ctrl-C in a folder job adds a note to the KeyboardInterrupt saying how many images were written."""
    output = Path(output_path)
    jobs = _image_jobs(Path(input_path), output)
    to_video = len(jobs) == 1 and is_animation_video_path(jobs[0][1])  # an animation written as a video
    for _src, dst in jobs if not to_video else ():
        output_format(dst)  # a suffix no image format has fails before any work
    backends: dict[tuple[int, int], Backend] = {}  # one prepared backend per image size
    seconds, frames, written = 0.0, 0, 0
    losses: dict[str, list[str]] = {}
    failures: list[str] = []

    def run(image: np.ndarray) -> np.ndarray:
        nonlocal seconds
        key = (image.shape[0], image.shape[1])
        if key not in backends:
            backends[key] = (prepare or prepare_backend)(model, dataclasses.replace(options.run, batch_size=1), *key)
        t0 = time.perf_counter()
        out = backends[key].run(torch.from_numpy(image[None].copy()))[0].numpy()
        seconds += time.perf_counter() - t0
        return out

    def translate_frames(images: list[np.ndarray]) -> list[np.ndarray]:
        """A still, or an animation's frames in order with ``--temporal`` across them, as in a video."""
        stabilise = make_stabiliser(options.temporal) if len(images) > 1 else None
        if stabilise is None:
            return [run(image) for image in images]
        return [stabilise(image, run(image)) for image in images]

    try:
        for src, dst in tqdm(jobs, unit="image", disable=not options.progress or len(jobs) < 2):
            try:
                picture = read_picture(src, options.run.size)
                if to_video:
                    _check_video_target(picture, dst, options)  # before the model runs
                    lost = picture.lost + _write_as_video(picture, translate_frames(picture.frames), dst, options)
                else:
                    check_writable(picture, dst)
                    lost = picture.lost + write_picture(picture.with_frames(translate_frames(picture.frames)), dst)
            except (MediaError, OutputError) as e:
                if len(jobs) == 1:
                    raise
                failures.append(str(e) if str(src) in str(e) else f"{src}: {e}")
                continue
            for what in lost:
                losses.setdefault(what, []).append(src.name)
            frames += len(picture.frames)
            written += 1
    except KeyboardInterrupt as e:
        if written:
            e.add_note(f"wrote {written} of {len(jobs)} images to {output} before stopping, each complete "
                       f"(the other {len(jobs) - written} were not written)")
        raise
    finally:
        for backend in backends.values() if prepare is None else ():
            backend.close()
    described = next(iter(backends.values())).describe() if backends else "no backend prepared"
    report = TranslateReport(output, frames, seconds, described, warnings=_summary(losses) + failures)
    if failures:
        raise ImagesFailed(report, len(failures), len(jobs))
    return report


def translate(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    options: TranslateOptions,
) -> TranslateReport:
    """Translate a video file, an image, or a folder of images; the kind is told from the input.  ``-`` as
    the input reads a video from standard input, as the output writes one to standard output."""
    src = Path(input_path)
    from_stdin, to_stdout = is_stdio(src), is_stdio(output_path)
    if not from_stdin and not src.exists():
        raise MediaError(f"input not found: {src}")
    if to_stdout:
        check_stdout()
        stdout_format(options.format)  # MP4/MOV refused before the model loads
        if not from_stdin and (src.is_dir() or is_image(src)):
            raise MediaError(f"cannot write {src} to {STDOUT_NAME}: only a video goes to a pipe (name an output file)")
    elif options.format is not None and not from_stdin:
        raise MediaError(f"--format names the container of `-` ({STDIN_NAME} or {STDOUT_NAME}); "
                         f"{src}'s is told from its bytes and {output_path}'s from its name")
    if not (from_stdin or to_stdout):
        check_not_input(src, output_path)
    model = load_model(model_path)
    model.require_image_input()  # before any input is opened
    if not from_stdin and (src.is_dir() or is_image(src)):
        return translate_images(src, output_path, model, options)
    return translate_video(src, output_path, model, options)
