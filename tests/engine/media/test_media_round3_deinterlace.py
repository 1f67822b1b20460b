"""Interlaced input is deinterlaced before the model.  Broadcast MPEG-2 (25i, top field first) from Debian's
``ffmpeg`` went to the model woven, combing baked in, and came out tagged progressive with no note.  The
frames the model sees are checked against Debian ``ffmpeg``'s own ``bwdif`` of the same file; outputs are
read back with ``ffprobe``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.sources import VideoFileSource
from tests.engine.media.ffprobe import ffprobe_streams
from tests.engine.media_checks import audio_packets, video_times

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)
W, H, FRAMES = 96, 64, 12


def _interlaced_ts(path: Path, *, flagged: bool = True) -> Path:
    """25i MPEG-2 in MPEG-TS with AAC, as a broadcast writes it: 50 moving pictures a second woven into
    top-field-first frames (``flagged=False``: the same fields coded as progressive frames)."""
    flags = ["-flags", "+ilme+ildct", "-top", "1"] if flagged else []
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=50",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(FRAMES / 25),
                    "-vf", "tinterlace=interleave_top,fieldorder=tff,format=yuv420p", "-c:v", "mpeg2video",
                    "-q:v", "2", *flags, "-c:a", "aac", "-f", "mpegts", str(path)], check=True)  # fmt: skip
    return path


def _ffmpeg_rgb(path: Path, *filters: str) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-an", *(["-vf", ",".join(filters)] if filters
                          else []), "-pix_fmt", "rgb24", "-f", "rawvideo", "-"], check=True,
                         capture_output=True).stdout  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3)


def _seen(path: Path, mode: str) -> tuple[np.ndarray, VideoFileSource]:
    source = VideoFileSource(path, deinterlace=mode)  # type: ignore[arg-type]
    try:
        frames = np.stack([f.image for f in source.frames()])
    finally:
        source.close()
    return frames, source


def _far(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_the_model_sees_what_ffmpegs_bwdif_makes_of_the_fields(tmp_path: Path) -> None:
    src = _interlaced_ts(tmp_path / "broadcast.ts")
    # woven: the fields as they are, their 4:2:0 chroma read field by field (as the source converts them)
    reference, woven = _ffmpeg_rgb(src, "bwdif=mode=send_frame"), _ffmpeg_rgb(src, "scale=interl=1")
    seen, source = _seen(src, "auto")
    assert len(seen) == len(reference) == FRAMES
    assert _far(seen, reference) < 0.3  # the same filter on the same fields: the RGB conversion's rounding at most
    assert _far(woven, reference) > 1.0  # the woven frames are far from it: the check can tell
    assert source.interlaced and "deinterlaced with FFmpeg's bwdif" in " ".join(source.notes())
    off, quiet = _seen(src, "off")
    assert _far(off, woven) < 0.3 and "--deinterlace off" in " ".join(quiet.notes())


def test_on_deinterlaces_fields_tagged_progressive_and_auto_leaves_them(tmp_path: Path) -> None:
    src = _interlaced_ts(tmp_path / "untagged.ts", flagged=False)
    reference, woven = _ffmpeg_rgb(src, "bwdif=mode=send_frame:deint=all"), _ffmpeg_rgb(src)
    on, _ = _seen(src, "on")
    auto, source = _seen(src, "auto")
    assert _far(on, reference) < 0.3 and _far(auto, woven) < 0.3
    assert not source.interlaced and source.notes() == []


def test_a_translated_broadcast_keeps_its_frames_times_and_audio(tiny_model: Path, tmp_path: Path) -> None:
    src = _interlaced_ts(tmp_path / "broadcast.ts")
    out = tmp_path / "out.ts"
    report = translate(src, out, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False))
    assert any("is interlaced: deinterlaced with FFmpeg's bwdif" in w for w in report.warnings), report.warnings
    video = next(s for s in ffprobe_streams(out) if s["codec_type"] == "video")
    assert video.get("field_order", "progressive") == "progressive"
    assert report.frames == FRAMES
    want = video_times(src)
    got = video_times(out)
    assert np.allclose(np.array(got) - got[0], np.array(want) - want[0], atol=1e-3)  # each frame at its time
    assert [p for _, p in audio_packets(out)] == [p for _, p in audio_packets(src)]  # every audio packet, in order
