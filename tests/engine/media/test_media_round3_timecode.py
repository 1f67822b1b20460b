"""A timecode track, as iPhones, cameras and editors write one (here Debian's ``ffmpeg -timecode``): the
output keeps the start timecode (MOV/MP4: a new tmcd track, Matroska: a TIMECODE tag) and its audio, and
a container that cannot hold a timecode names it in one warning.  A data track the output cannot hold
never fails the job; outputs are read back with ``ffprobe``."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from cyclestream.engine.jobs.translate import TranslateOptions, translate
from tests.engine.media.ffprobe import ffprobe_streams

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)
TIMECODE = "01:02:03:04"


@pytest.fixture(scope="module")
def with_timecode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("tc") / "in.mov"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25", "-f", "lavfi", "-i",
                    "sine=f=440:sample_rate=48000", "-t", "0.4", "-timecode", TIMECODE, "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", "-c:a", "aac", str(src)], check=True)  # fmt: skip
    kinds = [(s["codec_type"], s.get("codec_tag_string")) for s in ffprobe_streams(src)]
    assert ("data", "tmcd") in kinds, kinds  # the producer wrote what a phone writes
    return src


@pytest.mark.parametrize("ext", ["mov", "mp4", "mkv"])
def test_the_timecode_and_the_audio_come_out(tiny_model: Path, with_timecode: Path, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"out.{ext}"
    translate(with_timecode, out, tiny_model, TranslateOptions(temporal="off", progress=False))
    streams = ffprobe_streams(out)
    assert [s["codec_type"] for s in streams if s["codec_type"] != "data"] == ["video", "audio"]
    video = streams[0]
    tags = {k.lower(): v for k, v in video.get("tags", {}).items()}
    assert tags.get("timecode") == TIMECODE
    if ext != "mkv":  # QuickTime's own timecode track, written anew by the muxer
        (tmcd,) = [s for s in streams if s["codec_type"] == "data"]
        assert tmcd.get("codec_tag_string") == "tmcd" and tmcd["tags"]["timecode"] == TIMECODE


def test_a_container_without_timecodes_names_it(tiny_model: Path, with_timecode: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out.ts"
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        translate(with_timecode, out, tiny_model, TranslateOptions(temporal="off", progress=False))
    assert [s["codec_type"] for s in ffprobe_streams(out)] == ["video", "audio"]  # MPEG-TS keeps the AAC
    assert f"cannot hold the timecode {TIMECODE}: dropped" in caplog.text
