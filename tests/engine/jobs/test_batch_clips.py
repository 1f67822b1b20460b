"""Clips for the batch tests, made with PyAV directly (ordinary x264 settings, a keyframe a second as
phones and cameras write them), and the checks that they are what the tests need."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cyclestream.engine.media.synthetic import synthetic_frame

BT709 = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}


def write_camera_clip(
    path: Path,
    seconds: float = 3.0,
    fps: int = 24,
    width: int = 96,
    height: int = 64,
    gop: int | None = 24,
    audio: bool = True,
    vfr: bool = False,
    rotation: float = 0,
    colour: dict[str, int] | None = None,
    subtitles: bool = False,
    scenecut: bool = True,
) -> list[int]:
    """H.264 (x264 defaults, B-frames included; a keyframe every ``gop`` frames) + an AAC tone; ``vfr``:
    frame durations alternate 1 and 2 periods (time base 1/(100·fps)); ``rotation``: a display matrix;
    ``colour``: tags, pixels encoded with that matrix; ``subtitles`` (Matroska): two SubRip cues, a title,
    chapters; ``scenecut=False``: keyframes only every ``gop`` frames (x264 adds them at scene changes too).
    Returns the video pts."""
    time_base = Fraction(1, fps * 100) if vfr else Fraction(1, fps)
    pts, t = [], 0
    while float(t * time_base) < seconds - 1e-9:
        pts.append(t)
        t += (100 * (1 + len(pts) % 2)) if vfr else 1
    end = float(t * time_base)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        options = {"g": str(gop)} if gop else {}
        if not scenecut:
            options["sc_threshold"] = "0"
        video.codec_context.options = options
        if rotation:
            video.set_display_rotation(rotation)
        for key, value in (colour or {}).items():
            setattr(video.codec_context, key, value)
        sound = out.add_stream("aac", rate=48000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        subs = out.add_mux_stream("subrip") if subtitles else None
        if subtitles:
            out.metadata["title"] = "A film"
            ms = Fraction(1, 1000)
            half = int(end * 500)
            out.set_chapters([
                {"id": 1, "start": 0, "end": half, "time_base": ms, "metadata": {"title": "One"}},
                {"id": 2, "start": half, "end": 2 * half, "time_base": ms, "metadata": {"title": "Two"}},
            ])
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, width, height), format="rgb24")
            if colour:
                frame = frame.reformat(format="yuv420p", dst_colorspace=colour.get("colorspace"),
                                       dst_color_range=colour.get("color_range"))
                for key, value in colour.items():
                    setattr(frame, key, value)
            frame.pts, frame.time_base = p, time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if subs is not None:
            for start, text in ((100, b"Bonjour"), (int(end * 1000) - 600, b"Au revoir")):
                packet = av.Packet(text)
                packet.stream, packet.time_base = subs, Fraction(1, 1000)
                packet.pts = packet.dts = start
                packet.duration = 300
                out.mux(packet)
        if sound is not None:
            rate, chunk = 48000, 1024
            tone = (0.2 * np.sin(2 * np.pi * 440.0 * np.arange(int(rate * end)) / rate)).astype(np.float32)
            for start in range(0, len(tone), chunk):
                samples = av.AudioFrame.from_ndarray(np.stack([tone[start : start + chunk]] * 2), format="fltp",
                                                     layout="stereo")
                samples.sample_rate, samples.pts, samples.time_base = rate, start, Fraction(1, rate)
                out.mux(sound.encode(samples))
            out.mux(sound.encode(None))
    return pts


def keyframe_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [float(p.pts * stream.time_base) for p in c.demux(stream) if p.size and p.is_keyframe]


def test_camera_clip_has_a_keyframe_about_every_second_and_b_frames(tmp_path: Path) -> None:
    path = tmp_path / "cam.mp4"
    write_camera_clip(path, seconds=3)
    assert len(keyframe_times(path)) >= 3
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pts = [p.pts for p in c.demux(stream) if p.size]
    assert pts != sorted(pts)  # frames are reordered: B-frames


@pytest.mark.parametrize("vfr", [False, True])
def test_camera_clip_rates(tmp_path: Path, vfr: bool) -> None:
    path = tmp_path / "cam.mkv"
    pts = write_camera_clip(path, seconds=2, vfr=vfr)
    steps = set(np.diff(pts).tolist())
    assert steps == ({100, 200} if vfr else {1})
