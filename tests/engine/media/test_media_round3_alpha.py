"""Video with transparency: VP9 ``yuva420p`` (WebM) and ProRes 4444 from Debian's ``ffmpeg`` lost their alpha
silently, and an H.264 Matroska output still said ``ALPHA_MODE=1``.  The model sees each picture on white, as
still images with transparency; the alpha goes back where the output's encoder and pixel format hold it, and
is named in one line where they do not.  Outputs are read back with Debian's ``ffmpeg``/``ffprobe``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.media.sources import VideoFileSource
from tests.engine.media.ffprobe import ffprobe_streams

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)
W, H, FRAMES = 64, 48, 6
# opaque on the left, a quarter opaque on the right, a gradient along the bottom rows
ALPHA = "a='if(gt(Y,40),X*4,if(lt(X,32),255,64))'"
SOURCE = f"testsrc2=size={W}x{H}:rate=25,format=yuva444p,geq=lum='lum(X,Y)':cb='cb(X,Y)':cr='cr(X,Y)':{ALPHA}"


def _make(path: Path, *codec: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", SOURCE, "-frames:v", str(FRAMES), *codec,
                    str(path)], check=True)  # fmt: skip
    return path


def _ffmpeg_raw(path: Path, pix_fmt: str, *before: str, vf: str | None = None) -> np.ndarray:
    args = ["ffmpeg", "-v", "error", *before, "-i", str(path), *(["-vf", vf] if vf else []), "-pix_fmt", pix_fmt,
            "-f", "rawvideo", "-"]  # fmt: skip
    raw = subprocess.run(args, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 4 if pix_fmt == "rgba" else 1)


@pytest.fixture(scope="module")
def vp9_alpha(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make(tmp_path_factory.mktemp("alpha") / "sticker.webm", "-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p",
                 "-crf", "10", "-b:v", "0")  # fmt: skip


def test_the_model_sees_a_vp9_alpha_picture_on_white(vp9_alpha: Path) -> None:
    rgba = _ffmpeg_raw(vp9_alpha, "rgba", "-c:v", "libvpx-vp9").astype(int)  # libvpx reads the alpha stream
    assert rgba[..., 3].min() < 100  # the producer wrote transparency
    on_white = (rgba[..., :3] * rgba[..., 3:] + 255 * (255 - rgba[..., 3:])) // 255
    source = VideoFileSource(vp9_alpha)
    try:
        frames = list(source.frames())
        assert source.frame_info.alpha
    finally:
        source.close()
    assert len(frames) == FRAMES
    for frame, want, planes in zip(frames, on_white, rgba, strict=True):
        assert frame.alpha is not None and np.abs(frame.alpha.astype(int) - planes[..., 3]).max() <= 2
        assert np.abs(frame.image.astype(int) - want).mean() < 1.5


def test_vp9_alpha_goes_back_into_a_webm(vp9_alpha: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    encode = EncodeOptions(codec="libvpx-vp9", pix_fmt="yuva420p", crf=10, preset=None)
    report = translate(vp9_alpha, out, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False,
                                                                    encode=encode))  # fmt: skip
    assert not any("transparency" in w for w in report.warnings)
    (video,) = [s for s in ffprobe_streams(out) if s["codec_type"] == "video"]
    assert video["tags"].get("ALPHA_MODE") == "1"
    got = _ffmpeg_raw(out, "gray", "-c:v", "libvpx-vp9", vf="alphaextract").astype(int)
    want = _ffmpeg_raw(vp9_alpha, "gray", "-c:v", "libvpx-vp9", vf="alphaextract").astype(int)
    assert got.shape == want.shape and np.abs(got - want).mean() < 2.0


def test_prores_4444_alpha_goes_back_into_a_mov(tiny_model: Path, tmp_path: Path) -> None:
    src = _make(tmp_path / "key.mov", "-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le")
    out = tmp_path / "out.mov"
    encode = EncodeOptions(codec="prores_ks", pix_fmt="yuva444p10le", crf=None, preset=None)
    report = translate(src, out, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False,
                                                              encode=encode))  # fmt: skip
    assert not any("transparency" in w for w in report.warnings)
    got = _ffmpeg_raw(out, "gray", vf="alphaextract").astype(int)
    want = _ffmpeg_raw(src, "gray", vf="alphaextract").astype(int)
    assert want.min() < 100 and np.abs(got - want).max() <= 3 and np.abs(got - want).mean() < 0.5  # 8-bit here


def test_an_output_without_alpha_names_it_and_drops_the_tag(vp9_alpha: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    report = translate(vp9_alpha, out, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False))
    (note,) = [w for w in report.warnings if "transparency" in w]
    assert str(vp9_alpha) in note and "libx264/yuv420p has no alpha" in note and "\n" not in note
    (video,) = [s for s in ffprobe_streams(out) if s["codec_type"] == "video"]
    assert not any(k.lower() == "alpha_mode" for k in video.get("tags", {}))
