"""An AVI output states the input's frame rate.  AVI's muxer has no variable frame rate (it is asked, not
a table: no ``AVFMT_VARIABLE_FPS``), so it writes 1 / its time base as the rate; a clip from Debian's
``ffmpeg`` with MP4's fine time base came out saying 600 fps.  Outputs are read back with ``ffprobe``."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from cyclestream.engine.jobs.translate import TranslateOptions, translate
from tests.engine.media.ffprobe import ffprobe_streams

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)


def _frames_of(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], check=True, capture_output=True,
                         text=True)  # fmt: skip
    return int(out.stdout.strip())


@pytest.mark.parametrize(("rate", "frames"), [("25", 10), ("30000/1001", 12)])
def test_avi_output_says_the_inputs_frame_rate(tiny_model: Path, tmp_path: Path, rate: str, frames: int) -> None:
    src = tmp_path / "in.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=32x24:rate={rate}", "-frames:v",
                    str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-video_track_timescale", "90000",
                    str(src)], check=True)  # fmt: skip
    out = tmp_path / "out.avi"
    translate(src, out, tiny_model, TranslateOptions(temporal="off", progress=False))
    (video,) = [s for s in ffprobe_streams(out) if s["codec_type"] == "video"]
    assert video["avg_frame_rate"] == video["r_frame_rate"] == ("25/1" if rate == "25" else rate)
    assert _frames_of(out) == frames
    assert float(video.get("duration") or 0) == pytest.approx(frames / float(Fraction(rate)), abs=0.05)


def test_an_mp4_output_keeps_the_inputs_time_base(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25", "-frames:v", "5",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-video_track_timescale", "90000", str(src)],
                   check=True)  # fmt: skip
    out = tmp_path / "out.mp4"
    translate(src, out, tiny_model, TranslateOptions(temporal="off", progress=False))
    (video,) = [s for s in ffprobe_streams(out) if s["codec_type"] == "video"]
    assert video["time_base"] == "1/90000" and video["avg_frame_rate"] == "25/1"
