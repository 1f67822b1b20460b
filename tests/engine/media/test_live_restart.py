"""A live source whose server restarts: GStreamer's RTSP server, stopped and started again 5 s later.

The usual case of a camera or media server rebooting.  The server is a separate process (the system
Python's GstRtspServer, installed by tests/system_packages.sh), the receiver the real
``cyclestream stream`` command with its default reconnection, the recording checked by Debian's
ffprobe.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.media.test_live_senders import free_port, stop, wait_until_bound

SERVER = Path(__file__).parents[1] / "senders" / "gst_rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
OUTAGE = 5.0


def _why_no_server() -> str | None:
    if shutil.which("ffprobe") is None:
        return "needs Debian's ffprobe (tests/system_packages.sh installs it as root)"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer"], capture_output=True)
    if probe.returncode != 0:
        return "needs GStreamer's RTSP server for the system Python (python3-gi, gir1.2-gst-rtsp-server-1.0)"
    return None


def _start_server(port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(port)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    return server


def _frame_times(path: Path) -> list[float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0",
         str(path)], capture_output=True, text=True, check=True).stdout
    return [float(line.strip(",")) for line in out.split() if line.strip(",")]


@pytest.mark.slow
@pytest.mark.skipif(_why_no_server() is not None, reason=str(_why_no_server()))
def test_rtsp_server_restarted_within_5_s_is_survived_with_the_defaults(tiny_model: Path, tmp_path: Path) -> None:
    port = free_port(kind=1)  # SOCK_STREAM
    out, stats = tmp_path / "restart.mkv", tmp_path / "stats.json"
    server = _start_server(port)
    job = subprocess.Popen(
        [sys.executable, "-m", "cyclestream", "-q", "stream", "--model", str(tiny_model), "--temporal", "off",
         "--source", f"rtsp://127.0.0.1:{port}/test", "--sink", str(out), "--read-timeout", "1",
         "--duration", "16", "--stats-json", str(stats)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(5.0)  # connected and recording
        server.kill()
        server.wait(timeout=10)
        time.sleep(OUTAGE)
        server = _start_server(port)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        for proc in (job, server):
            stop(proc)
    assert job.returncode == 0, stderr
    assert "Traceback" not in stderr and "reconnecting for up to 30 s" in stderr, stderr
    summary = json.loads(stdout)
    assert summary == json.loads(stats.read_text())
    assert summary["reconnects"] == 1, summary
    times = _frame_times(out)
    assert len(times) == summary["frames_out"] and times == sorted(times)
    steps = [b - a for a, b in itertools.pairwise(times)]
    gap = max(steps)
    # The outage is kept as real time, closed within the back-off's 2 s and a reconnection of the server's
    # own (its RTSP handshake and the next keyframe, one a second).
    assert OUTAGE - 1.0 < gap < OUTAGE + 3.5, gap
    assert abs(summary["reconnect_gaps_s"][0] - gap) < 1.0, (summary, gap)
    k = steps.index(gap)  # times[k] is the last frame before the outage
    assert k + 1 > 15 and len(times) - k - 1 > 15  # frames from both sides of it


def _udp_sender(port: int, seconds: float) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-t",
                    str(seconds), "-c:v", "libx264", "-g", "15", "-tune", "zerolatency", "-f", "mpegts",
                    f"udp://127.0.0.1:{port}?pkt_size=1316"], check=True, timeout=60)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh installs them as root)")
@pytest.mark.parametrize("policy", ["real-time", "closed"])
def test_a_reconnection_gap_is_kept_or_closed_as_asked(tiny_model: Path, tmp_path: Path, policy: str) -> None:
    """A UDP sender that stops for 3 s and starts again: the gap stays in the recording's timestamps
    (real-time, the default) or the first frame after it follows the last one before it (closed)."""
    port = free_port()
    out = tmp_path / "gap.mkv"
    job = subprocess.Popen(
        [sys.executable, "-m", "cyclestream", "-q", "stream", "--model", str(tiny_model), "--temporal", "off",
         "--source", f"udp://127.0.0.1:{port}", "--sink", str(out), "--read-timeout", "1", "--reconnect-for", "6",
         "--reconnect-gap", policy], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_bound(port)
        _udp_sender(port, 3)
        time.sleep(3.0)
        _udp_sender(port, 3)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        stop(job)
    assert job.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["reconnects"] == 1 and summary["reconnect_gap"] == policy, summary
    assert summary["reconnect_gaps_s"][0] > 2.0, summary  # the source was away for about 3 s either way
    times = _frame_times(out)
    assert len(times) == summary["frames_out"] and times == sorted(times)
    gap = max(b - a for a, b in itertools.pairwise(times))
    if policy == "real-time":
        assert abs(gap - summary["reconnect_gaps_s"][0]) < 0.5, (gap, summary)
    else:
        assert gap < 0.2, (gap, summary)  # one usual step (1/15 s), not the outage
        assert times[-1] - times[0] == pytest.approx((len(times) - 1) / 15, abs=0.5)
