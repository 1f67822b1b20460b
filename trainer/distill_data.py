"""What a student is distilled on: the source-domain images of a folder, and frames of its videos.

Videos (``.mp4``, ``.mkv``, ...) anywhere under the data folder are decoded once into
``RUN/frames/<video>/NNNNNN.png`` (every ``step``-th frame, upright RGB as ``translate`` sees them);
a frame already there is not decoded again, and each file is written atomically, so a resumed run or
several DDP ranks see the same list.  The teacher labels images and frames alike on the fly.
"""

from __future__ import annotations

from pathlib import Path

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.images import save_rgb
from cyclestream.trainer.data import IMAGE_EXTENSIONS, DataError, scan_images

FRAMES_DIR = "frames"
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m"})
FRAME_STEP = 4


def _visible(folder: Path, extensions: frozenset[str]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def extract_frames(video: Path, out: Path, step: int = FRAME_STEP) -> list[Path]:
    """Every ``step``-th frame of ``video`` as PNGs in ``out`` (those already there are kept)."""
    from cyclestream.engine.media.sources import VideoFileSource

    try:
        source = VideoFileSource(video, audio=False)
    except MediaError as e:
        raise DataError(f"{e}; remove it from the data folder") from None
    written = []
    try:
        for frame in source.frames():
            if frame.index % step:
                continue
            path = out / f"{frame.index:06d}.png"
            if not path.exists():
                save_rgb(frame.image, path)
            written.append(path)
    except MediaError as e:
        raise DataError(f"{e}; remove it from the data folder") from None
    finally:
        source.close()
    return written


def source_images(data: Path, frames_dir: Path, step: int = FRAME_STEP) -> list[Path]:
    """The images under ``data`` plus the extracted frames of its videos; a DataError if there are none."""
    if not data.is_dir():
        raise DataError(f"data folder not found: {data}" if not data.exists() else f"data path is not a folder: {data}")
    videos = _visible(data, VIDEO_EXTENSIONS)
    frames = [f for v in videos for f in extract_frames(v, frames_dir / v.relative_to(data).with_suffix(""), step)]
    images = scan_images(data, "source-domain") if _visible(data, IMAGE_EXTENSIONS) or not videos else []
    return images + frames
