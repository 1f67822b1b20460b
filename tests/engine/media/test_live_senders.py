"""Live streams from ordinary senders, each a separate process on loopback, and stopping a live job.

The sender (tests/engine/senders/x264_sender.py) is independent of cyclestream: PyAV with x264's
defaults, so one keyframe every 250 frames.  The receiver is the real ``run_stream`` or the real
``cyclestream stream`` command in a subprocess (for signals).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from cyclestream.engine.backends.options import RunOptions
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.stream import StreamOptions, StreamReport, run_stream
from cyclestream.engine.stats import LATENCY_WINDOW, PipelineStats
from tests.engine.media_checks import video_times

SENDER = Path(__file__).parents[1] / "senders" / "x264_sender.py"
FPS = 50  # x264's keyint 250 is then 5 s: the tests stay short, the sender stays ordinary


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sender(url: str, seconds: float, fps: int = FPS, fmt: str = "mpegts") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(SENDER), url, "--fps", str(fps), "--seconds", str(seconds), "--format", fmt],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def udp_url(port: int) -> str:
    return f"udp://127.0.0.1:{port}?pkt_size=1316"


def wait_until_bound(port: int, timeout: float = 60.0) -> None:
    """Until a receiver in another process listens on the UDP port (binding it fails): the command starts
    seconds after its process does, more on a loaded machine, and a sender started before that loses its
    start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on udp port {port}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def run_in_thread(options: StreamOptions) -> tuple[threading.Thread, list[StreamReport | BaseException]]:
    result: list[StreamReport | BaseException] = []

    def job() -> None:
        try:
            result.append(run_stream(options))
        except BaseException as e:
            result.append(e)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    return thread, result


def report_of(thread: threading.Thread, result: list[StreamReport | BaseException], timeout: float) -> StreamReport:
    thread.join(timeout)
    assert not thread.is_alive(), "the live job did not end"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        n = 0
        try:
            for _ in container.decode(video=0):
                n += 1
        except av.error.FFmpegError:
            pass  # a recording cut by SIGKILL ends mid-packet: what came before counts
        return n


# ----------------------------------------------------------------------------- senders


@pytest.mark.slow
def test_sender_started_after_the_receiver_with_its_only_keyframe(tiny_model: Path) -> None:
    """4 s at 50 fps is 200 frames: x264 sends a single keyframe, the first packet.  Probing on one
    connection and reading on another loses it, and then nothing can ever be decoded."""
    port = free_port()
    thread, result = run_in_thread(
        StreamOptions(temporal="off", source=f"udp://127.0.0.1:{port}", model=tiny_model, read_timeout=1.0,
                      reconnect_for=0, stats_interval=0, max_latency=5.0)
    )
    sender = None
    try:
        time.sleep(1.0)  # the receiver is waiting
        sender = start_sender(udp_url(port), seconds=4)
        report = report_of(thread, result, timeout=30)
    finally:
        if sender is not None:
            stop(sender)
    assert report.frames_in > 100  # from the first frame on (x264's lookahead holds back only its tail)
    assert report.skipped_packets == 0
    assert report.stats.frames > 0


@pytest.mark.slow
def test_sender_started_before_the_receiver_is_joined_at_its_next_keyframe(tiny_model: Path, tmp_path: Path) -> None:
    """Joined mid-GOP: packets are skipped (and counted) until the keyframe at 5 s, then decoded."""
    port = free_port()
    out = tmp_path / "joined.ts"
    sender = start_sender(udp_url(port), seconds=8)
    try:
        time.sleep(2.0)  # the sender is well past its first keyframe
        report = run_stream(
            StreamOptions(source=f"udp://127.0.0.1:{port}", sink=str(out), model=tiny_model, read_timeout=1.0,
                          temporal="off", reconnect_for=0, stats_interval=0, max_latency=5.0)
        )
    finally:
        stop(sender)
    assert report.skipped_packets > 0  # it joined mid-GOP and said so
    assert report.frames_in > 50  # from the next keyframe (at 5 s, or earlier at a scene cut) on
    assert report.frames_in + report.skipped_packets <= 8 * FPS
    assert report.stats.frames > 0 and len(video_times(out)) == report.stats.frames


@pytest.mark.slow
def test_sender_that_stops_and_restarts_is_reconnected(tiny_model: Path, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "reconnected.mkv"
    thread, result = run_in_thread(
        StreamOptions(source=f"udp://127.0.0.1:{port}", sink=str(out), model=tiny_model, read_timeout=1.0,
                      temporal="off", reconnect_for=3, stats_interval=0, max_latency=5.0)
    )
    senders: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(0.5)
        senders.append(start_sender(udp_url(port), seconds=2.5, fps=25))
        senders[-1].wait(timeout=30)
        time.sleep(1.5)  # silence: the receiver notices the stall and reconnects
        senders.append(start_sender(udp_url(port), seconds=2.5, fps=25))
        report = report_of(thread, result, timeout=60)
    finally:
        for s in senders:
            stop(s)
    assert report.frames_in > 80  # more than either sender's 62 frames: both were received
    assert report.end_reason and "no data" in report.end_reason
    times = video_times(out)
    assert len(times) == report.stats.frames and times == sorted(times)
    assert times[-1] - times[0] > 4.0  # one continuous clock across the gap


def _protocol_available(url: str) -> str | None:
    """None when FFmpeg has the protocol, else why not."""
    try:
        with av.open(url, timeout=0.2):
            return None
    except av.error.ProtocolNotFoundError:
        return f"the bundled FFmpeg {av.ffmpeg_version_info} has no {url.split(':')[0]} protocol"
    except av.error.FFmpegError:
        return None  # it exists (and timed out or refused)


def test_srt_sender(tiny_model: Path) -> None:
    port = free_port()
    missing = _protocol_available(f"srt://127.0.0.1:{port}?mode=caller&connect_timeout=200")
    if missing:
        pytest.skip(missing)
    sender = start_sender(f"srt://127.0.0.1:{port}?mode=listener", seconds=6)
    try:
        time.sleep(1.0)
        report = run_stream(StreamOptions(source=f"srt://127.0.0.1:{port}?mode=caller", model=tiny_model,
                                          temporal="off", read_timeout=1.0, reconnect_for=0, stats_interval=0,
                                          max_latency=5.0))
    finally:
        stop(sender)
    assert report.stats.frames > 0


@pytest.mark.slow
def test_rtmp_sender_to_a_listening_receiver(tiny_model: Path) -> None:
    """FFmpeg's RTMP protocol can listen (one publisher, no server): the receiver listens, the sender pushes."""
    port = free_port(socket.SOCK_STREAM)
    url = f"rtmp://127.0.0.1:{port}/live/test"
    thread, result = run_in_thread(
        StreamOptions(source=url + "?listen", model=tiny_model, read_timeout=1.0, reconnect_for=0, stats_interval=0,
                      temporal="off", max_latency=5.0)
    )
    sender = None
    try:
        time.sleep(1.5)  # the receiver is listening
        sender = start_sender(url, seconds=3, fmt="flv")
        report = report_of(thread, result, timeout=30)
    finally:
        if sender is not None:
            stop(sender)
    assert report.frames_in > 50 and report.skipped_packets == 0


# ----------------------------------------------------------------------------- stopping


class Cli:
    """``cyclestream stream`` in a subprocess, its stderr read line by line without blocking the test."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cyclestream", "-q", "stream", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, f"exited early: {''.join(self.stderr)}"
                continue
            self.stderr.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} never appeared on stderr: {''.join(self.stderr)}")

    def signal_and_wait(self, sig: int, within: float) -> tuple[int, float, str, str]:
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=within + 10)  # stderr is the pump's alone: communicate() would take lines from it
        finally:
            self.kill()
        elapsed = time.monotonic() - t0
        assert self.proc.stdout is not None
        stdout = self.proc.stdout.read()
        self._pump_thread.join(timeout=10)  # every stderr line the process wrote is queued now
        while not self.lines.empty():
            self.stderr.append(self.lines.get())
        return self.proc.returncode, elapsed, stdout, "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def cli() -> Iterator[list[Cli]]:
    started: list[Cli] = []
    yield started
    for c in started:
        c.kill()


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_waiting_on_a_silent_source_ends_at_once(
    tiny_model: Path, tmp_path: Path, cli: list[Cli], sig: int, code: int
) -> None:
    port = free_port()
    out = tmp_path / "never.mp4"
    cli.append(Cli("--model", str(tiny_model), "--source", f"udp://127.0.0.1:{port}", "--sink", str(out)))
    cli[0].wait_for("waiting for udp://")
    time.sleep(0.7)  # inside an open attempt
    rc, elapsed, _, stderr = cli[0].signal_and_wait(sig, within=1.0)
    assert elapsed < 1.5, f"took {elapsed:.2f} s to stop"
    assert rc == code, stderr
    assert "stopped before any frame arrived from udp://" in stderr and "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_during_reconnect_back_off_ends_at_once_with_a_playable_file(
    tiny_model: Path, tmp_path: Path, cli: list[Cli]
) -> None:
    port = free_port()
    out = tmp_path / "cut.mp4"
    cli.append(Cli("--model", str(tiny_model), "--source", f"udp://127.0.0.1:{port}", "--sink", str(out),
                   "--read-timeout", "1", "--reconnect-for", "20"))
    cli[0].wait_for("waiting for udp://")
    sender = start_sender(udp_url(port), seconds=2, fps=25)
    try:
        sender.wait(timeout=30)
        cli[0].wait_for("still reconnecting (attempt 3", timeout=20)  # the third attempt is under way
        rc, elapsed, stdout, stderr = cli[0].signal_and_wait(signal.SIGINT, within=1.0)
    finally:
        stop(sender)
    assert elapsed < 1.5, f"took {elapsed:.2f} s to stop"
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    frames_out = json.loads(stdout)["frames_out"]
    assert frames_out > 0 and len(video_times(out)) == frames_out  # finished: every frame written is in the file


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once_and_keeps_the_recording(tiny_model: Path, tmp_path: Path, cli: list[Cli]) -> None:
    out = tmp_path / "kept.mp4"
    cli.append(Cli("--model", str(tiny_model), "--source", "lavfi:testsrc2=size=64x48:rate=20", "--sink", str(out)))
    cli[0].wait_for("recording to")
    time.sleep(2.0)
    cli[0].proc.send_signal(signal.SIGINT)
    cli[0].wait_for("Ctrl-C again")
    rc, elapsed, _, stderr = cli[0].signal_and_wait(signal.SIGINT, within=1.0)
    assert elapsed < 1.5
    assert rc in (0, 130), stderr  # 0 when the first Ctrl-C had already finished the file
    assert "Traceback" not in stderr
    assert frame_count(out) > 5


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_recording_survives_sigkill(tiny_model: Path, tmp_path: Path, cli: list[Cli], suffix: str) -> None:
    out = tmp_path / f"live{suffix}"
    cli.append(Cli("--model", str(tiny_model), "--source", "lavfi:testsrc2=size=64x48:rate=20", "--sink", str(out)))
    cli[0].wait_for("playable even if interrupted")
    time.sleep(3.0)
    os.kill(cli[0].proc.pid, signal.SIGKILL)
    cli[0].kill()
    assert not list(tmp_path.glob(".*partial*"))  # written under its final name
    assert frame_count(out) >= 20  # everything up to about the last second


def test_a_recording_format_a_crash_would_lose_is_refused_before_starting(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(CycleStreamError, match=r"cannot record a live stream to .*live\.avi: use \.ts"):
        run_stream(StreamOptions(source="lavfi:testsrc2=size=64x48:rate=5", sink=str(tmp_path / "live.avi"),
                                 temporal="off", model=tiny_model, duration=1.0, stats_interval=0))
    assert not (tmp_path / "live.avi").exists()


# ----------------------------------------------------------------------------- batching and bounded stats


def test_live_job_runs_the_batch_size_it_prepared(tiny_model: Path) -> None:
    report = run_stream(
        # 320x240 at 120 fps outruns the model here: frames queue up, so batches can fill
        StreamOptions(temporal="off", source="lavfi:testsrc2=size=320x240:rate=120", model=tiny_model, duration=2.0,
                      stats_interval=0, run=RunOptions(batch_size=4), max_latency=5.0)
    )
    model = report.stats.stages["model"]
    assert model.items > model.calls  # some calls carried more than one frame


def test_latency_window_is_bounded_but_frames_are_all_counted() -> None:
    stats = PipelineStats()
    for i in range(LATENCY_WINDOW + 5000):
        stats.record(0.001 if i < 5000 else 0.002)
    assert stats.frames == LATENCY_WINDOW + 5000
    assert len(stats.latencies) == LATENCY_WINDOW
    assert stats.latency_ms(50) == pytest.approx(2.0)  # the old frames left the window
    assert stats.latency_ms(50, recent=10) == pytest.approx(2.0)
