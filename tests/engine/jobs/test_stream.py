"""Live streams with real FFmpeg on loopback: a UDP MPEG-TS sender, lavfi test sources, the MJPEG page."""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.stream import StreamOptions, StreamReport, run_stream
from cyclestream.engine.media.preview_server import PreviewServer
from tests.engine.media_checks import video_times


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sender(port: int, fps: float, seconds: float) -> subprocess.Popen[bytes]:
    url = f"udp://127.0.0.1:{port}?pkt_size=1316"
    return subprocess.Popen([sys.executable, "-m", "cyclestream.engine.media.synthetic", url, str(fps), str(seconds)])


def assert_monotonic_and_playable(path: Path, frames: int) -> list[float]:
    times = video_times(path)
    assert len(times) == frames
    assert all(b > a for a, b in itertools.pairwise(times)), "output timestamps must increase"
    return times


@pytest.mark.slow
def test_udp_stream_to_file_and_sender_killed_mid_stream(tiny_model: Path, tmp_path: Path) -> None:
    port = free_udp_port()
    sender = start_sender(port, fps=15, seconds=60)
    out = tmp_path / "live.mkv"
    killer = threading.Timer(8.0, sender.kill)  # the sender dies mid-stream
    killer.start()
    try:
        report = run_stream(
            StreamOptions(temporal="off",
                source=f"udp://127.0.0.1:{port}",
                sink=str(out),
                model=tiny_model,
                read_timeout=1.5,
                reconnect_for=0,
                stats_interval=0,
                max_latency=2.0,
            )
        )
    finally:
        killer.cancel()
        sender.kill()
        sender.wait()
    assert report.stats.frames > 10
    assert report.end_reason  # it says why the stream ended
    times = assert_monotonic_and_playable(out, report.stats.frames)
    assert times[-1] - times[0] == pytest.approx(report.stats.frames / 15, rel=0.5)  # wall-clock step with input
    summary = report.summary()
    assert summary["latency_ms"]["p50"] > 0 and summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"]
    assert set(summary["stages"]) == {"decode", "model", "encode"}
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow
def test_model_slower_than_source_drops_frames_and_bounds_latency(tiny_model: Path) -> None:
    # 320x240 at 120 fps is far faster than this CPU runs even the tiny model: frames must be dropped.
    report = run_stream(
        StreamOptions(temporal="off",
            source="lavfi:testsrc2=size=320x240:rate=120",
            model=tiny_model,
            duration=3.0,
            stats_interval=0,
            max_latency=1.0,
        )
    )
    summary = report.summary()
    assert summary["dropped"] > 0 and summary["frames_out"] > 0
    assert summary["input_fps"] > summary["output_fps"]
    assert summary["latency_ms"]["p99"] < 1000  # no backlog builds up
    assert summary["late_frames"] == 0


def test_source_slower_than_model_keeps_every_frame(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "slow.mp4"
    report = run_stream(
        StreamOptions(temporal="off",
            source="lavfi:testsrc2=size=64x48:rate=5", sink=str(out), model=tiny_model, duration=3.0, stats_interval=0
        )
    )
    summary = report.summary()
    assert 10 <= summary["frames_in"] <= 20  # paced at 5 fps, not as fast as lavfi can generate
    assert summary["dropped"] <= 1
    assert_monotonic_and_playable(out, report.stats.frames)


def test_file_played_in_real_time(tiny_model: Path, make_clip) -> None:
    src = make_clip("clip.mp4", width=64, height=48, frames=24, fps=12)
    t0 = time.perf_counter()
    report = run_stream(StreamOptions(temporal="off", source=str(src), model=tiny_model, realtime=True,
                                      stats_interval=0))
    assert time.perf_counter() - t0 >= 1.8  # 24 frames at 12 fps take two seconds
    assert report.frames_in == 24 and report.end_reason is None


@pytest.mark.slow
def test_mjpeg_preview_serves_frames_to_an_http_client(tiny_model: Path) -> None:
    ready: list[PreviewServer | None] = []
    result: list[StreamReport] = []

    def job() -> None:
        result.append(
            run_stream(
                StreamOptions(temporal="off",
                    source="lavfi:testsrc2=size=96x64:rate=10",
                    model=tiny_model,
                    duration=6.0,
                    preview="127.0.0.1:0",
                    stats_interval=0,
                ),
                on_ready=ready.append,
            )
        )

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready and time.monotonic() < deadline:
        time.sleep(0.05)
    server = ready[0]
    assert server is not None
    page = urllib.request.urlopen(server.url, timeout=10).read()
    assert b"/stream.mjpg" in page
    frame = urllib.request.urlopen(server.url + "frame.jpg", timeout=10).read()
    with Image.open(BytesIO(frame)) as im:
        assert im.format == "JPEG" and im.size == (2 * 96, 64)  # input beside output
    with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        body = b""
        while body.count(b"--frame") < 3 and time.monotonic() < deadline:
            body += stream.read1(65536)
    assert body.count(b"\xff\xd8") >= 2  # several JPEG images arrived
    thread.join(timeout=30)
    assert result and result[0].stats.frames > 0


@pytest.mark.slow
def test_sigterm_finalizes_a_playable_file(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "term.mp4"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cyclestream",
            "-q",
            "stream",
            "--model",
            str(tiny_model),
            "--source",
            "lavfi:testsrc2=size=64x48:rate=10",
            "--sink",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert '"frames_out"' in stdout
    assert len(video_times(out)) > 5
    assert not list(tmp_path.glob(".*partial*"))


def test_dead_source_fails_clearly(tiny_model: Path) -> None:
    with pytest.raises(CycleStreamError, match=r"cannot open|source not found"):
        run_stream(StreamOptions(temporal="off", source="/nonexistent/cam.mp4", model=tiny_model, stats_interval=0))
    with pytest.raises(CycleStreamError, match="unsupported source scheme"):
        run_stream(StreamOptions(temporal="off", source="gopher://x", model=tiny_model, stats_interval=0))


def test_camera_options_become_v4l2_options() -> None:
    from cyclestream.engine.media.live import parse_source

    spec = parse_source("/dev/video0", (640, 480), 30, "mjpeg")
    assert (spec.kind, spec.format, spec.url) == ("v4l2", "v4l2", "/dev/video0")
    assert spec.options == {"video_size": "640x480", "framerate": "30", "input_format": "mjpeg"}
    lavfi = parse_source("lavfi:testsrc2=size=64x48:rate=5")
    assert (lavfi.kind, lavfi.format, lavfi.url) == ("lavfi", "lavfi", "testsrc2=size=64x48:rate=5")


@pytest.mark.slow
def test_translated_stream_sent_to_a_udp_sink_can_be_received(tiny_model: Path) -> None:
    import av

    port = free_udp_port()
    received: list[tuple[int, int]] = []

    def receive() -> None:
        with av.open(
            f"udp://127.0.0.1:{port}", options={"probesize": "200000", "analyzeduration": "500000"}, timeout=(20.0, 3.0)
        ) as inp:
            try:
                for frame in inp.decode(video=0):
                    received.append((frame.width, frame.height))
            except av.error.FFmpegError:
                pass  # the sender stopped: read timeout

    receiver = threading.Thread(target=receive)
    receiver.start()
    time.sleep(0.5)  # the receiver binds the port before anything is sent
    report = run_stream(
        StreamOptions(temporal="off",
            source="lavfi:testsrc2=size=96x64:rate=10",
            model=tiny_model,
            sink=f"udp://127.0.0.1:{port}?pkt_size=1316",
            duration=4.0,
            stats_interval=0,
        )
    )
    receiver.join(timeout=30)
    assert report.stats.frames > 10
    assert len(received) > 5 and set(received) == {(96, 64)}
