"""Synthetic clips encoded with PyAV: moving shapes, an optional tone, constant or variable rate.

Tests, benchmarks and the live-stream sender use these instead of downloaded media.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from cyclestream.engine.errors import MediaError


def synthetic_frame(index: int, width: int, height: int) -> np.ndarray:
    """A deterministic RGB frame: a gradient background and a square that moves with ``index``."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 255 // max(1, width - 1) + index * 7) % 256
    img[..., 1] = (y * 255 // max(1, height - 1)) % 256
    img[..., 2] = (index * 13) % 256
    side = max(2, min(width, height) // 4)
    left = (index * 5) % max(1, width - side)
    top = (index * 3) % max(1, height - side)
    img[top : top + side, left : left + side] = (255, 255, 255)
    return img


def write_clip(
    path: str | os.PathLike[str],
    width: int = 64,
    height: int = 48,
    frames: int = 24,
    *,
    fps: int = 24,
    audio: bool = False,
    vfr: bool = False,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> list[int]:
    """Encode a clip; returns the video pts written (time base 1/(fps·100) for VFR, else 1/fps).

    With ``vfr`` the frame durations alternate between 1 and 2 frame periods.
    """
    time_base = Fraction(1, fps * 100) if vfr else Fraction(1, fps)
    step = 100 if vfr else 1
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += step * (1 + i % 2) if vfr else step
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        sound = out.add_stream("aac", rate=48000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, width, height), format="rgb24")
            frame.pts, frame.time_base = p, time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            seconds = float((pts[-1] + step) * time_base)
            _write_tone(out, sound, seconds)
    return pts


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    rate = 48000
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    for frame in audio_frames(np.stack([tone, tone]), rate):
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def audio_frames(samples: np.ndarray, sample_rate: int, step: int = 1024) -> Iterator[av.AudioFrame]:
    """(2, samples) float32 stereo → planar float audio frames of ``step`` samples, pts in samples."""
    for start in range(0, samples.shape[1], step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + step]),
                                           format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
        yield frame


def encode_rgb_clip(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: int,
    *,
    crf: int = 18,
    preset: str = "medium",
    tune: str | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 48000,
    label: str = "the clip",
) -> int:
    """H.264 (yuv420p) from RGB frames, with (2, samples) float32 stereo AAC interleaved (audio is muxed
    up to each video frame's time), as an MP4 with the index first; returns the frames written."""
    rgb_frames = iter(frames)
    first = next(rgb_frames, None)
    if first is None:
        raise MediaError(f"cannot encode {label}: no frames")
    container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
    try:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        video.codec_context.options = {"crf": str(crf), "preset": preset, **({"tune": tune} if tune else {})}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout="stereo")
            sound.bit_rate = 64_000
        pending_audio = audio_frames(audio, sample_rate) if audio is not None else iter(())
        pending = next(pending_audio, None)
        count = 0
        for i, rgb in enumerate(itertools.chain([first], rgb_frames)):
            while sound is not None and pending is not None and pending.pts <= (i + 1) * sample_rate / fps:
                container.mux(sound.encode(pending))
                pending = next(pending_audio, None)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
            count += 1
        while sound is not None and pending is not None:
            container.mux(sound.encode(pending))
            pending = next(pending_audio, None)
        container.mux(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot encode {label}: {e}") from None
    finally:
        container.close()
    return count


def make_test_clip(folder: str | os.PathLike[str], name: str = "clip.mp4", **kwargs: object) -> Path:
    path = Path(folder) / name
    write_clip(path, **kwargs)  # type: ignore[arg-type]
    return path


def send_stream(
    url: str,
    width: int = 160,
    height: int = 120,
    *,
    fps: float = 15.0,
    seconds: float = 10.0,
    container_format: str = "mpegts",
) -> int:
    """Push synthetic frames to ``url`` in real time (a live sender for tests); returns frames sent."""
    import time

    time_base = Fraction(1, 90000)
    sent = 0
    with av.open(url, "w", format=container_format) as out:
        video = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = time_base
        video.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(max(1, round(fps)))}
        start = time.perf_counter()
        while sent < seconds * fps:
            due = start + sent / fps
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
            frame = av.VideoFrame.from_ndarray(synthetic_frame(sent, width, height), format="rgb24")
            frame.pts, frame.time_base = round(sent / fps / time_base), time_base
            out.mux(video.encode(frame))
            sent += 1
        out.mux(video.encode(None))
    return sent


if __name__ == "__main__":  # python -m cyclestream.engine.media.synthetic URL [FPS] [SECONDS]
    import sys

    args = sys.argv[1:]
    send_stream(
        args[0], fps=float(args[1]) if len(args) > 1 else 15.0, seconds=float(args[2]) if len(args) > 2 else 10.0
    )
