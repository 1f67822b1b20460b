"""Every codec the output muxer takes is kept: AAC audio in an MPEG-TS output (the muxer is asked, not a
table).  The input comes from Debian's ``ffmpeg``; the output is read back with ``ffprobe``."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from cyclestream.engine.jobs.translate import TranslateOptions, translate
from tests.engine.media.ffprobe import ffprobe_streams
from tests.engine.media_checks import audio_packets

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)


def _clip_with_aac(path: Path) -> Path:
    lavfi = ["-f", "lavfi", "-i", "testsrc2=size=32x24:rate=5:duration=0.6", "-f", "lavfi", "-i", "sine=duration=0.6"]
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    subprocess.run(["ffmpeg", "-v", "error", *lavfi, *codecs, str(path)], check=True)
    return path


def test_aac_is_kept_in_a_ts_output(tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = _clip_with_aac(tmp_path / "in.mp4")
    out = tmp_path / "out.ts"
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        translate(src, out, tiny_model, TranslateOptions(temporal="off", progress=False))

    kinds = [(s["codec_type"], s["codec_name"]) for s in ffprobe_streams(out)]
    assert kinds == [("video", "h264"), ("audio", "aac")]
    assert "cannot hold" not in caplog.text
    # Copied, not re-encoded: the same AAC frames, each behind the 7-byte ADTS header MPEG-TS carries.
    assert [p[7:] for _, p in audio_packets(out)] == [p for _, p in audio_packets(src)]
