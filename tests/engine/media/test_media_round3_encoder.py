"""Encoder options asked of the encoder itself: ``--crf``/``--preset`` reach every encoder that has them,
and one that has not refuses them in one line.  Inputs come from Debian's ``ffmpeg``, outputs are read
back with ``ffprobe`` and PyAV."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from cyclestream.engine.errors import MediaError
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.encode_options import EncodeOptions
from tests.engine.jobs.test_real_world_video import decoded, model_output
from tests.engine.media.ffprobe import ffprobe_streams

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)


def _clip(path: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=32x24:rate=5:duration=0.6",
            "-c:v",
            "libx264rgb",
            "-qp",
            "0",
            "-pix_fmt",
            "rgb24",
            str(path),
        ],
        check=True,
    )
    return path


def test_crf_zero_reaches_libx264rgb(tiny_model: Path, tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mkv")
    out = tmp_path / "out.mkv"
    options = TranslateOptions(
        temporal="off",
        progress=False,
        encode=EncodeOptions(codec="libx264rgb", crf=0, preset="ultrafast", pix_fmt="rgb24"),
    )
    translate(src, out, tiny_model, options)

    stream = ffprobe_streams(out)[0]
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] in ("rgb24", "gbrp")  # RGB, not 4:2:0
    expected = model_output(tiny_model, decoded(src))
    got = np.stack(decoded(out))
    assert np.abs(got.astype(int) - expected).max() <= 1  # lossless: crf 0 was given, not x264's 23
    with av.open(str(out)) as c:  # x264 writes its settings into the stream: lossless qp=0, not crf=23.0
        first = bytes(next(p for p in c.demux(video=0) if p.size))
    assert b"rc=cqp" in first and b" qp=0" in first and b"crf=23" not in first


@pytest.mark.parametrize(
    ("encode", "word"),
    [
        (EncodeOptions(codec="ffv1", crf=10, preset=None, pix_fmt="bgr0"), "--crf 10"),
        (EncodeOptions(codec="mpeg4", crf=None, preset="fast"), "--preset fast"),
    ],
)
def test_encoder_without_the_option_refuses_it(
    tiny_model: Path, tmp_path: Path, encode: EncodeOptions, word: str
) -> None:
    src = _clip(tmp_path / "in.mkv")
    out = tmp_path / "out.mkv"
    with pytest.raises(MediaError) as e:
        translate(src, out, tiny_model, TranslateOptions(temporal="off", progress=False, encode=encode))
    assert word in str(e.value) and encode.codec in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_declared_defaults_are_quiet_for_an_encoder_without_them(tiny_model: Path, tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mkv")
    out = tmp_path / "out.mkv"
    translate(
        src,
        out,
        tiny_model,
        TranslateOptions(temporal="off", progress=False, encode=EncodeOptions(codec="ffv1", pix_fmt="bgr0")),
    )
    assert ffprobe_streams(out)[0]["codec_name"] == "ffv1"
