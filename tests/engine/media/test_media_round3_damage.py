"""The damage warning counts only frames that were really lost.  Made with Debian's ``ffmpeg``: a clip
trimmed with ``-ss … -c copy`` (an edit list hides the packets before the cut: the container counts them,
the decoder does not show them) and a Matroska file whose video starts a second after its audio (the
file's duration is not the video's) are healthy; a clip cut short is still called damaged."""

from __future__ import annotations

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


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("damage") / "src.mkv"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=32x24:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:sample_rate=48000",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(src),
    )
    return src


def decoded_by_ffprobe(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], check=True, capture_output=True,
                         text=True)  # fmt: skip
    return int(out.stdout.strip())


def translated(src: Path, model: Path, out: Path) -> tuple[int, str]:
    """The frames written and the report's warnings, as one text."""
    report = translate(src, out, model, TranslateOptions(temporal="off", progress=False))
    return report.frames, "\n".join(report.warnings)


def test_an_edit_list_trim_is_not_damage(tiny_model: Path, clip: Path, tmp_path: Path) -> None:
    trim = tmp_path / "trim.mp4"
    ffmpeg("-ss", "1.3", "-i", str(clip), "-c", "copy", str(trim))  # copies from the keyframe at 1 s, hides 0.3 s
    video = next(s for s in ffprobe_streams(trim) if s["codec_type"] == "video")
    shown = decoded_by_ffprobe(trim)
    assert int(video["nb_frames"]) > shown  # the container counts the hidden packets too
    frames, warnings = translated(trim, tiny_model, tmp_path / "out.mp4")
    assert frames == shown and "damaged" not in warnings


def test_video_that_starts_after_the_audio_is_not_damage(tiny_model: Path, clip: Path, tmp_path: Path) -> None:
    late = tmp_path / "late.mkv"
    ffmpeg("-itsoffset", "1", "-i", str(clip), "-i", str(clip), "-map", "0:v", "-map", "1:a", "-c", "copy", str(late))
    frames, warnings = translated(late, tiny_model, tmp_path / "out.mkv")
    assert frames == decoded_by_ffprobe(late) == 75 and "damaged" not in warnings


def test_a_clip_cut_short_is_still_damaged(tiny_model: Path, clip: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    ffmpeg("-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(whole))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])  # the index promises 75 frames
    frames, warnings = translated(cut, tiny_model, tmp_path / "out.mp4")
    assert frames < 75 and "cut.mp4 is damaged or truncated" in warnings
