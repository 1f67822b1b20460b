"""An input whose clock starts late (a broadcast TS at 10 h) is written from zero where the output container
expects it, every stream moved alike, and said in one line; a TS output keeps the clock.  A TS from Debian's
``ffmpeg`` (``-output_ts_offset 36000``) once became an MP4 whose duration was 10 hours.  Outputs are read
back with ``ffprobe``."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cyclestream.engine.jobs.batch import BatchOptions, run_batch
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from tests.engine.media.ffprobe import ffprobe_streams

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)
OFFSET = 36000.0


def _late_ts(path: Path, seconds: float = 1.0, gop: int = 25) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds), "-c:v", "libx264", "-g", str(gop),
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-output_ts_offset", str(OFFSET), "-f", "mpegts",
                    str(path)], check=True)  # fmt: skip
    return path


def _format(path: Path) -> dict[str, float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=start_time,duration", "-of", "json",
                          str(path)], check=True, capture_output=True, text=True).stdout  # fmt: skip
    fmt = json.loads(out)["format"]
    return {k: float(fmt[k]) for k in ("start_time", "duration")}


def _starts(path: Path) -> dict[str, float]:
    return {s["codec_type"]: float(s["start_time"]) for s in ffprobe_streams(path)}


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_a_late_clock_starts_at_zero_with_the_streams_in_step(tiny_model: Path, tmp_path: Path, suffix: str) -> None:
    src = _late_ts(tmp_path / "broadcast.ts")
    before = _starts(src)
    assert before["video"] > OFFSET
    out = tmp_path / f"out{suffix}"
    report = translate(src, out, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False))
    fmt, after = _format(out), _starts(out)
    assert fmt["start_time"] < 0.1 and fmt["duration"] == pytest.approx(1.0, abs=0.1)  # not 10 hours
    # audio and video moved alike: the gap between their starts is the input's
    assert after["video"] - after["audio"] == pytest.approx(before["video"] - before["audio"], abs=0.002)
    (note,) = [w for w in report.warnings if "starts at 10:00:0" in w]
    assert str(src) in note and "start at zero" in note and "\n" not in note


def test_a_ts_output_keeps_the_clock(tiny_model: Path, tmp_path: Path) -> None:
    src = _late_ts(tmp_path / "broadcast.ts")
    out = tmp_path / "out.ts"
    report = translate(src, out, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False))
    assert _starts(out)["video"] == pytest.approx(_starts(src)["video"], abs=0.002)
    assert not any("start at zero" in w for w in report.warnings)


@pytest.mark.slow
def test_batch_segments_of_a_late_clock_join_from_zero(tiny_model: Path, tmp_path: Path) -> None:
    src = _late_ts(tmp_path / "broadcast.ts", seconds=3.0, gop=10)
    whole = tmp_path / "whole.mkv"
    translate(src, whole, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False))
    options = BatchOptions(translate=TranslateOptions(temporal="off", progress=False, preview=False),
                           segment_seconds=1.0, progress=False)  # fmt: skip
    out = tmp_path / "out"
    run_batch([src], out, tiny_model, dataclasses.replace(options, container="mkv"))
    joined = out / "broadcast.mkv"
    assert _format(joined)["start_time"] < 0.1 and _format(joined)["duration"] == pytest.approx(3.0, abs=0.1)
    assert _starts(joined) == pytest.approx(_starts(whole), abs=0.002)
