"""``-`` as the input or output of ``cyclestream translate``, FFmpeg's convention for pipes:
``ffmpeg -i x.mp4 -f mpegts - | cyclestream translate - - | ffplay -``.  Debian's ``ffmpeg`` makes the
input and ``ffprobe`` reads the output, each in its own process joined to the CLI by pipes."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)

FRAMES = 25  # one second at 25 fps


def _clip(tmp_path: Path) -> Path:
    """One second of 32x24 H.264 video at 25 fps with an AAC tone, made by ffmpeg."""
    path = tmp_path / "in.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=48000", "-t", "1", "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)  # fmt: skip
    return path


def _cli(model: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cyclestream", "-q", "translate", *args, "--model", str(model),
            "--backend", "eager", "--temporal", "off"]  # fmt: skip


def _ffprobe(source: str, stdin: Any = None) -> dict[str, Any]:
    """ffprobe's streams (with counted frames) and format of a file, or of ``-`` read from ``stdin``."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json",
                          source], stdin=stdin, check=True, capture_output=True, text=True).stdout  # fmt: skip
    return dict(json.loads(out))


def _streams(probe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["codec_type"]: s for s in probe["streams"]}


def _to_ffprobe(command: list[str], cwd: Path) -> tuple[dict[str, Any], str]:
    """Run ``command`` with its standard output read by ffprobe from a pipe; (ffprobe's answer, its stderr)."""
    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as job:
        assert job.stdout is not None and job.stderr is not None
        probe = _ffprobe("-", stdin=job.stdout)
        job.stdout.close()
        err = job.stderr.read().decode()
        assert job.wait(timeout=60) == 0, err
    return probe, err


def test_standard_input_from_ffmpeg_to_a_file(tiny_model: Path, tmp_path: Path) -> None:
    src, out = _clip(tmp_path), tmp_path / "out.mkv"
    with subprocess.Popen(["ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", "-f", "mpegts", "-"],
                          stdout=subprocess.PIPE) as producer:  # fmt: skip
        job = subprocess.run(_cli(tiny_model, "-", str(out)), stdin=producer.stdout, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert producer.stdout is not None
        producer.stdout.close()
    assert job.returncode == 0, job.stderr
    streams = _streams(_ffprobe(str(out)))
    assert streams["video"]["codec_name"] == "h264" and int(streams["video"]["nb_read_frames"]) == FRAMES
    assert streams["audio"]["codec_name"] == "aac"


def test_a_file_to_standard_output_is_mpegts_with_its_audio(tiny_model: Path, tmp_path: Path) -> None:
    probe, err = _to_ffprobe(_cli(tiny_model, str(_clip(tmp_path)), "-"), tmp_path)
    assert probe["format"]["format_name"] == "mpegts"
    streams = _streams(probe)
    assert int(streams["video"]["nb_read_frames"]) == FRAMES and streams["audio"]["codec_name"] == "aac"
    assert "wrote standard output (25 frames" in err  # the report on stderr, not among the media bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # no preview, no file named '-'


def test_format_matroska_to_standard_output(tiny_model: Path, tmp_path: Path) -> None:
    probe, _ = _to_ffprobe(_cli(tiny_model, str(_clip(tmp_path)), "-", "--format", "matroska"), tmp_path)
    assert probe["format"]["format_name"].startswith("matroska")
    streams = _streams(probe)
    assert int(streams["video"]["nb_read_frames"]) == FRAMES and "audio" in streams


def test_ffmpeg_through_translate_to_ffprobe(tiny_model: Path, tmp_path: Path) -> None:
    """``ffmpeg … -f mpegts - | cyclestream translate - - | ffprobe -``."""
    src = _clip(tmp_path)
    with subprocess.Popen(["ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", "-f", "mpegts", "-"],
                          stdout=subprocess.PIPE) as producer:  # fmt: skip
        with subprocess.Popen(_cli(tiny_model, "-", "-"), cwd=tmp_path, stdin=producer.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as job:  # fmt: skip
            assert producer.stdout is not None and job.stdout is not None and job.stderr is not None
            producer.stdout.close()  # the job holds its own end
            probe = _ffprobe("-", stdin=job.stdout)
            job.stdout.close()
            err = job.stderr.read().decode()
            assert job.wait(timeout=60) == 0, err
    streams = _streams(probe)
    assert int(streams["video"]["nb_read_frames"]) == FRAMES and streams["audio"]["codec_name"] == "aac"


def test_mp4_to_standard_output_is_refused_in_one_line(tiny_model: Path, tmp_path: Path) -> None:
    job = subprocess.run(_cli(tiny_model, str(_clip(tmp_path)), "-", "--format", "mp4"), cwd=tmp_path,
                         capture_output=True, timeout=60)  # fmt: skip
    err = job.stderr.decode()
    assert job.returncode == 2 and job.stdout == b""
    assert len(err.strip().splitlines()) == 1 and "standard output" in err and "--format mpegts|matroska" in err


def test_a_terminal_as_standard_output_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        job = subprocess.run(_cli(tiny_model, str(_clip(tmp_path)), "-"), cwd=tmp_path, stdout=follower,
                             stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
    finally:
        os.close(follower)
        os.close(leader)
    assert job.returncode == 2 and "terminal" in job.stderr and len(job.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_reader_that_leaves_ends_the_job_quietly(tiny_model: Path, tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # no reader at all: the first write meets a closed pipe
    try:
        job = subprocess.run(_cli(tiny_model, str(_clip(tmp_path)), "-"), cwd=tmp_path, stdout=write,
                             stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
    finally:
        os.close(write)
    assert job.returncode == 141, job.stderr
    assert "Traceback" not in job.stderr and "error" not in job.stderr


def test_standard_input_that_is_not_media_is_one_line(tiny_model: Path, tmp_path: Path) -> None:
    job = subprocess.run(_cli(tiny_model, "-", str(tmp_path / "out.mkv")), input=b"not a video\n" * 100,
                         capture_output=True, timeout=60)  # fmt: skip
    err = job.stderr.decode()
    assert job.returncode == 2 and err.startswith("cyclestream: error: cannot read standard input: "), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out.mkv").exists()
