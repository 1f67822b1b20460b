"""Bad input gets one clear line and never leaves an output that looks complete."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cyclestream.cli import main
from cyclestream.engine.errors import MediaError
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from tests.engine.media_checks import video_times
from tests.engine.processes import translate_until_writing

QUIET = TranslateOptions(temporal="off", progress=False)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["-q", *args])
    return code, capsys.readouterr().err.strip()


def only_file_is(folder: Path, *names: str) -> bool:
    return sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_missing_input(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(
        ["translate", str(tmp_path / "none.mp4"), str(tmp_path / "o.mp4"), "--model", str(tiny_model)], capsys
    )
    assert code == 2 and err == f"cyclestream: error: input not found: {tmp_path / 'none.mp4'}"


def test_random_bytes_are_not_a_video(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "noise.mp4"
    src.write_bytes(random.Random(1).randbytes(5000))
    (out := tmp_path / "out").mkdir()
    code, err = run_cli(["translate", str(src), str(out / "o.mp4"), "--model", str(tiny_model)], capsys)
    assert code == 2 and "cannot open" in err and "\n" not in err
    assert list(out.iterdir()) == []


def test_file_without_video_stream(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "sound.m4a"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(MediaError, match="has no video stream"):
        translate(src, tmp_path / "o.mp4", tiny_model, QUIET)
    assert not (tmp_path / "o.mp4").exists()


def test_truncated_mkv_translates_what_decodes_and_says_what_was_lost(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    src = make_clip("full.mkv", width=64, height=48, frames=60, audio=True)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 6 // 10])

    report = translate(cut, tmp_path / "o.mp4", tiny_model, QUIET)

    assert 0 < report.frames < 60
    assert len(report.warnings) == 1
    assert f"decoded {report.frames} of 60 frames ({60 - report.frames} lost)" in report.warnings[0]
    assert len(video_times(tmp_path / "o.mp4")) == report.frames  # a clean, playable partial output


def test_corrupt_middle_is_survived_and_reported(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    src = make_clip("clip.ts", width=64, height=48, frames=60)
    data = bytearray(src.read_bytes())
    rng = random.Random(0)
    start = len(data) // 3
    data[start : start + 3000] = rng.randbytes(3000)
    bad = tmp_path / "bad.ts"
    bad.write_bytes(bytes(data))

    report = translate(bad, tmp_path / "o.mp4", tiny_model, QUIET)

    assert 30 < report.frames < 60
    assert report.warnings and "lost" in report.warnings[0]


def test_truncated_mp4_without_index_fails_clearly(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("full.mp4", width=64, height=48, frames=30)  # moov written at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    out = tmp_path / "o.mp4"
    code, err = run_cli(["translate", str(cut), str(out), "--model", str(tiny_model)], capsys)
    assert code == 2 and "truncated" in err
    assert not out.exists()


@pytest.mark.parametrize(("codec", "message"), [("nope264", "unknown video encoder"), ("aac", "not video")])
def test_unknown_or_wrong_codec(
    make_clip: Callable[..., Path],
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    codec: str,
    message: str,
) -> None:
    src = make_clip("in.mp4", frames=3)
    out = tmp_path / "o.mp4"
    code, err = run_cli(["translate", str(src), str(out), "--model", str(tiny_model), "--codec", codec], capsys)
    assert code == 2 and message in err
    assert only_file_is(tmp_path, "in.mp4")


def test_codec_the_container_cannot_hold(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    code, err = run_cli(
        ["translate", str(src), str(tmp_path / "o.avi"), "--model", str(tiny_model), "--codec", "libx265"], capsys
    )
    assert code == 2 and "o.avi" in err and "partial" not in err
    assert only_file_is(tmp_path, "in.mp4")


def test_wrong_checkpoint_leaves_nothing(
    make_clip: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    model = tmp_path / "model.pth"
    model.write_bytes(b"\x00" * 100)
    code, err = run_cli(["translate", str(src), str(tmp_path / "o.mp4"), "--model", str(model)], capsys)
    assert code == 2 and "not a model file" in err
    assert only_file_is(tmp_path, "in.mp4", "model.pth")


@pytest.mark.slow
def test_ctrl_c_mid_translation_leaves_no_output(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    src = make_clip("long.mkv", width=160, height=120, frames=2000)
    out = tmp_path / "out.mp4"
    proc = translate_until_writing(src, out, tiny_model)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert only_file_is(tmp_path, "long.mkv")  # neither out.mp4 nor its temporary file
    assert os.path.exists(src)
