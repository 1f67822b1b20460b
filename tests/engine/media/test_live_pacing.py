"""Bursty sources paced by their own timestamps, frame times from the source, and counts that add up.

The HLS stream is written by Debian's ffmpeg into a folder that Python's http.server serves from a
separate process; the recording is read back by ffprobe.
"""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cyclestream.engine.jobs.stream import StreamOptions, run_stream

FPS, SECONDS = 15, 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ffprobe_times(path: Path) -> list[float]:
    """The video frames' presentation times in ``path``, as ffprobe reads them."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [float(line.strip(",")) for line in out.split() if line.strip(",")]


@pytest.fixture
def hls_url(tmp_path: Path) -> Iterator[str]:
    """A VOD HLS stream (1 s segments, 15 fps) served over HTTP by another process: it arrives in bursts."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("Debian's ffmpeg/ffprobe are not installed (tests/system_packages.sh)")
    folder = tmp_path / "hls"
    folder.mkdir()
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=64x48:rate={FPS}",
            "-t",
            str(SECONDS),
            "-c:v",
            "libx264",
            "-g",
            str(FPS),
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_playlist_type",
            "vod",
            str(folder / "index.m3u8"),
        ],
        check=True,
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/index.m3u8"
    finally:
        server.kill()
        server.wait(timeout=10)


def test_hls_in_bursts_is_paced_by_its_timestamps(tiny_model: Path, tmp_path: Path, hls_url: str) -> None:
    out = tmp_path / "hls.mkv"
    report = run_stream(
        StreamOptions(
            source=hls_url,
            sink=str(out),
            model=tiny_model,
            temporal="off",
            stats_interval=0,
            reconnect_for=0,
            max_latency=5.0,
        )
    )
    summary = report.summary()
    sent = FPS * SECONDS
    assert summary["frames_sent"] == sent
    assert summary["lost_before_decode"] + summary["dropped"] + summary["frames_out"] == sent
    # Released at 15 fps, not a second's burst at once: the model keeps up, so (nearly) every frame is translated.
    assert summary["frames_out"] >= sent - 3, summary
    times = ffprobe_times(out)
    assert len(times) == summary["frames_out"]
    assert times[0] < 0.1  # the recording starts near 0
    steps = sorted(b - a for a, b in itertools.pairwise(times))
    assert steps[len(steps) // 2] == pytest.approx(1 / FPS, abs=0.01)  # evenly spaced, not pairs once a second
    assert times[-1] - times[0] == pytest.approx((summary["frames_out"] - 1) / FPS, abs=0.3)


def test_file_without_realtime_translates_every_frame(tiny_model: Path, tmp_path: Path, make_clip) -> None:
    """A file is read as fast as it decodes: the pipeline waits for the model, nothing is dropped."""
    src = make_clip("clip.mp4", width=160, height=120, frames=60, fps=25)
    out = tmp_path / "every.ts"
    report = run_stream(
        StreamOptions(source=str(src), sink=str(out), model=tiny_model, temporal="off", stats_interval=0)
    )
    summary = report.summary()
    assert summary["frames_sent"] == 60 and summary["frames_out"] == 60 and summary["dropped"] == 0
    if shutil.which("ffprobe"):
        times = ffprobe_times(out)
        assert len(times) == 60 and times[0] < 0.1
        assert times[-1] == pytest.approx(59 / 25, abs=0.05)  # the file's own timestamps, not decode times


RECEIVER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); end = time.monotonic() + 1.5
while time.monotonic() < end:
    c.recv(65536)
"""


def test_a_lost_sink_still_ends_with_the_summary_and_stats(tiny_model: Path, tmp_path: Path) -> None:
    """A TCP receiver (a separate process) goes away mid-stream: exit 2, one line, summary and --stats-json."""
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        stats = tmp_path / "stats.json"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cyclestream",
                "-q",
                "stream",
                "--model",
                str(tiny_model),
                "--temporal",
                "off",
                "--source",
                "lavfi:testsrc2=size=64x48:rate=25",
                "--sink",
                f"tcp://127.0.0.1:{port}",
                "--duration",
                "20",
                "--stats-json",
                str(stats),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        receiver.kill()
        receiver.wait(timeout=10)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "lost" in done.stderr
    summary = json.loads(stats.read_text())
    assert summary == json.loads(done.stdout)
    assert summary["frames_out"] > 0 and "lost" in summary["end_reason"]
    assert summary["lost_before_decode"] + summary["dropped"] + summary["frames_out"] == summary["frames_sent"]
