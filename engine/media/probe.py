"""Opening media with PyAV and describing it, with one-line errors for what cannot be opened."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from cyclestream.engine.errors import MediaError, PermanentMediaError
from cyclestream.engine.media.colour import ColourTags
from cyclestream.engine.media.hdr import HdrMetadata
from cyclestream.engine.media.passthrough import main_video_stream

HEIF_SUFFIXES = frozenset({".heic", ".heif"})  # read and written through pillow-heif (the `heif` extra)
IMAGE_SUFFIXES = frozenset(
    {".png", ".apng", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif", *HEIF_SUFFIXES}
)
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg",
                            ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".mxf", ".y4m"})  # what a folder search counts


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    codec: str
    time_base: Fraction
    average_rate: Fraction | None
    frames: int  # from the container; 0 when it does not say
    duration: float | None  # seconds
    audio_streams: int
    video_index: int = 0  # which of the container's video streams is translated (cover art is skipped)
    colour: ColourTags | None = None  # set by a source once it has decoded a frame
    sample_aspect_ratio: Fraction | None = None
    hdr: HdrMetadata | None = None  # the first frame's mastering display / light level, set by a source
    alpha: bool = False  # the frames carry transparency (VideoFrame.alpha), set by a source

    @property
    def expected_frames(self) -> int:
        """Frames the container promises: its count, else duration × rate, else 0 (unknown)."""
        if self.frames > 0:
            return self.frames
        if self.duration and self.average_rate:
            return int(self.duration * float(self.average_rate) + 1e-6)  # audio may outlast the video
        return 0


def _error_text(e: BaseException) -> str:
    if isinstance(e, av.error.FFmpegError):
        return e.strerror or str(e)
    return getattr(e, "strerror", None) or str(e)


def open_input(
    path: str | os.PathLike[str],
    options: dict[str, str] | None = None,
    format: str | None = None,
    timeout: float | tuple[float, float] | None = None,
) -> Any:
    """``av.open`` for reading, turning every failure into a MediaError."""
    spec = str(path)
    if format is None and "://" not in spec and not Path(spec).exists():
        raise MediaError(f"input not found: {spec}")
    try:
        return av.open(spec, mode="r", format=format, options=options or {}, timeout=timeout)
    except av.error.InvalidDataError as e:
        raise MediaError(
            f"cannot open {spec}: {_error_text(e)} (not a media file, or damaged/truncated before its index)"
        ) from None
    except PERMANENT_ERRORS as e:
        raise PermanentMediaError(f"cannot open {spec}: {permanent_reason(spec, e)}") from None
    except (av.error.FFmpegError, OSError) as e:
        raise MediaError(f"cannot open {spec}: {_error_text(e)}") from None


# What asking again cannot change: a protocol missing from this FFmpeg build, an HTTP refusal (4xx).
PERMANENT_ERRORS = (av.error.ProtocolNotFoundError, av.error.HTTPClientError)


def permanent_reason(url: str, e: BaseException) -> str:
    """The line for a permanent error: a missing protocol says which FFmpeg lacks it."""
    if isinstance(e, av.error.ProtocolNotFoundError):
        scheme = url.split("://", 1)[0] if "://" in url else url
        return f"this FFmpeg build (PyAV's {av.ffmpeg_version_info}) has no {scheme}:// protocol"
    return _error_text(e)


def describe(container: Any) -> VideoInfo:
    if not container.streams.video:
        raise MediaError(f"{container.name} has no video stream")
    stream = main_video_stream(container)
    ctx = stream.codec_context
    if not ctx.width or not ctx.height:
        raise MediaError(f"{container.name}: the video stream has no frame size (damaged header?)")
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:  # the file's: less the time before the video starts (Matroska
        duration = container.duration / av.time_base  # whose audio starts first)
        if stream.start_time is not None and stream.time_base is not None and container.start_time is not None:
            duration -= max(0.0, float(stream.start_time * stream.time_base) - container.start_time / av.time_base)
    return VideoInfo(
        width=ctx.width,
        height=ctx.height,
        codec=ctx.name,
        time_base=stream.time_base or Fraction(1, 90000),
        average_rate=stream.average_rate or stream.base_rate,
        frames=stream.frames or 0,
        duration=duration,
        audio_streams=len(container.streams.audio),
        video_index=list(container.streams.video).index(stream),
    )


def is_image(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
