"""Files shaped like the ones phones, cameras and editors write, made with PyAV directly (not with
cyclestream's own writers): display-matrix rotation, colour tags, creation time and location,
subtitles, attachments, chapters, cover art, duplicate timestamps, a size change mid-stream."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np


def picture(index: int, width: int, height: int) -> np.ndarray:
    """An asymmetric picture (a red block top-left, a blue band at the bottom) that moves a little,
    with saturated colours where BT.601 and BT.709 disagree."""
    img = np.zeros((height, width, 3), np.uint8)
    img[...] = (40 + 3 * index, 160, 90)
    img[: height // 3, : width // 3] = (230, 30, 40)
    img[-max(2, height // 8) :, :] = (20, 40, 220)
    img[height // 2 : height // 2 + 4, (index * 3) % width :] = (250, 220, 0)
    return img


def _add_tone(out: Any) -> Any:
    stream = out.add_stream("aac", rate=48000)
    stream.layout = "stereo"
    return stream


def _write_tone(out: Any, stream: Any, seconds: float) -> None:
    for start in range(0, int(48000 * seconds), 1024):
        t = (start + np.arange(1024)) / 48000
        samples = np.stack([0.1 * np.sin(2 * np.pi * 330 * t)] * 2).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def write_device_clip(
    path: Path,
    width: int = 64,
    height: int = 48,
    frames: int = 6,
    fps: int = 30,
    rotation: float = 0,
    colour: dict[str, int] | None = None,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    audio: bool = True,
    metadata: dict[str, str] | None = None,
    sample_aspect_ratio: Fraction | None = None,
    attachments: dict[str, tuple[str, bytes]] | None = None,
) -> list[np.ndarray]:
    """A phone/camera-like clip; ``rotation`` is the display matrix's angle (a portrait phone clip:
    -90, i.e. shown turned 90° clockwise); ``colour`` sets the tags (colorspace, color_range,
    color_primaries, color_trc) and encodes the pixels with that matrix and range;
    ``sample_aspect_ratio`` makes it anamorphic (DV, HDV); ``attachments`` maps a file name to
    (mimetype, data) — an image attachment in Matroska is cover art.  Returns the RGB pictures as
    drawn (coded orientation)."""
    options = {"movflags": "use_metadata_tags"} if path.suffix.lower() in (".mov", ".mp4") and metadata else {}
    drawn = []
    with av.open(str(path), "w", options=options) as out:
        out.metadata.update(metadata or {})
        for name, (mimetype, data) in (attachments or {}).items():
            out.add_attachment(name, mimetype, data)
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if codec == "libx265":
            video.codec_context.options = {"x265-params": "log-level=error"}
        if rotation:
            video.set_display_rotation(rotation)
        if sample_aspect_ratio:
            video.codec_context.sample_aspect_ratio = sample_aspect_ratio
        for key, value in (colour or {}).items():
            setattr(video.codec_context, key, value)
        sound = _add_tone(out) if audio else None
        for i in range(frames):
            img = picture(i, width, height)
            drawn.append(img)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if colour:
                frame = frame.reformat(format=pix_fmt, dst_colorspace=colour.get("colorspace"),
                                       dst_color_range=colour.get("color_range"))
                for key, value in colour.items():
                    setattr(frame, key, value)
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            _write_tone(out, sound, frames / fps)
    return drawn


def write_editor_mkv(path: Path, frames: int = 12, fps: int = 12) -> None:
    """An editor's Matroska: H.264 + AAC + SubRip subtitles (French) + a second video stream (MJPEG)
    + a font attachment + two chapters + title and language tags."""
    with av.open(str(path), "w") as out:
        out.metadata["title"] = "My film"
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.metadata["language"] = "eng"
        sound = _add_tone(out)
        subs = out.add_mux_stream("subrip")
        subs.metadata["language"] = "fra"
        angle = out.add_stream("mjpeg", rate=fps)
        angle.width, angle.height, angle.pix_fmt = 32, 24, "yuvj420p"
        out.add_attachment("font.ttf", "application/x-truetype-font", b"\x00\x01\x00\x00not-really-a-font")
        ms = Fraction(1, 1000)
        out.set_chapters([
            {"id": 1, "start": 0, "end": 400, "time_base": ms, "metadata": {"title": "Intro"}},
            {"id": 2, "start": 400, "end": 1000, "time_base": ms, "metadata": {"title": "Main"}},
        ])
        for i in range(frames):
            for stream, (w, h) in ((video, (64, 48)), (angle, (32, 24))):
                frame = av.VideoFrame.from_ndarray(picture(i, w, h), format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
        out.mux(video.encode(None))
        out.mux(angle.encode(None))
        for start, text in ((100, b"Bonjour"), (600, b"Au revoir")):
            packet = av.Packet(text)
            packet.stream, packet.time_base = subs, ms
            packet.pts = packet.dts = start
            packet.duration = 300
            out.mux(packet)
        _write_tone(out, sound, frames / fps)


def write_duplicate_timestamps(path: Path, pts: list[int], time_base: Fraction = Fraction(1, 1000)) -> None:
    """An intra-only clip (MJPEG in Matroska) whose frames carry exactly ``pts`` (duplicates allowed)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("mjpeg", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuvj420p"
        video.time_base = video.codec_context.time_base = time_base
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(picture(i, 64, 48), format="rgb24")
            frame.pts, frame.time_base = i, time_base  # the encoder wants increasing pts; the muxer gets ``p``
            for packet in video.encode(frame):
                packet.pts = packet.dts = p
                out.mux(packet)
        out.mux(video.encode(None))


def write_size_change_ts(path: Path, sizes: list[tuple[int, int]], frames_each: int = 6, fps: int = 25) -> None:
    """MPEG-TS whose picture size changes between segments, as a broadcast or a camera switching
    resolution writes it: each segment is its own H.264 stream on the same PID, concatenated."""
    data = b""
    for n, (width, height) in enumerate(sizes):
        part = path.with_name(f"{path.stem}.part{n}.ts")
        with av.open(str(part), "w", options={"mpegts_copyts": "1"}) as out:
            video = out.add_stream("libx264", rate=fps)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            for i in range(frames_each):
                frame = av.VideoFrame.from_ndarray(picture(i, width, height), format="rgb24")
                frame.pts = n * frames_each + i + 10
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        data += part.read_bytes()
        part.unlink()
    path.write_bytes(data)
