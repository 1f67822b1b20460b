"""Counts that add up under datagram loss: Debian's ffmpeg sends MPEG-TS over UDP through a relay that
loses 4% of the datagrams (tests/engine/senders/lossy_udp_proxy.py, a separate process), into the real
``cyclestream stream`` command; the recording is counted by Debian's ffprobe.

Every frame the sender sent is accounted for: lost before decode (a gap in the timestamps, a frame
before the first decodable keyframe), dropped by the policy, or written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.media.test_live_senders import free_port, stop, wait_until_bound

PROXY = Path(__file__).parents[1] / "senders" / "lossy_udp_proxy.py"
FPS, SECONDS = 15, 8
SENT = FPS * SECONDS
# Frames the receiver cannot know of: the last PES waits in the demuxer for a next one that never comes,
# and a frame whose datagrams are all lost at the very end leaves no gap behind it.
UNSEEN = 4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                       reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh installs them as root)"),
]


def _frames_in(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0].strip(","))  # MPEG-TS: the stream is listed under its program too


@pytest.mark.parametrize(("seed", "drop_first"), [(1, 0), (2, 0), (3, 2)])
def test_every_frame_sent_through_a_lossy_relay_is_accounted_for(
    tiny_model: Path, tmp_path: Path, seed: int, drop_first: int
) -> None:
    """``drop_first``: the first keyframe is lost too, so the frames up to the next one are counted by their
    timestamps."""
    relay_port, port = free_port(), free_port()
    out = tmp_path / "lossy.ts"
    relay = subprocess.Popen([sys.executable, str(PROXY), "--listen", str(relay_port), "--to", str(port), "--loss",
                              "0.04", "--seed", str(seed), "--drop-first", str(drop_first)],
                             stdout=subprocess.PIPE, text=True)
    job = subprocess.Popen(
        [sys.executable, "-m", "cyclestream", "-q", "stream", "--model", str(tiny_model), "--temporal", "off",
         "--source", f"udp://127.0.0.1:{port}", "--sink", str(out), "--read-timeout", "1", "--reconnect-for", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
        wait_until_bound(port)
        # A keyframe a second: a lost keyframe costs at most a second of frames, counted as lost.
        subprocess.run(["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={FPS}",
                        "-t", str(SECONDS), "-c:v", "libx264", "-g", str(FPS), "-tune", "zerolatency", "-f", "mpegts",
                        f"udp://127.0.0.1:{relay_port}?pkt_size=1316"], check=True, timeout=60)
        stdout, stderr = job.communicate(timeout=60)
        relay.terminate()
        relayed = json.loads(relay.communicate(timeout=10)[0].splitlines()[-1])
    finally:
        for proc in (job, relay):
            stop(proc)
    assert job.returncode == 0, stderr
    assert relayed["dropped"] > 0, relayed
    summary = json.loads(stdout)
    assert summary["lost_before_decode"] + summary["dropped"] + summary["frames_out"] == summary["frames_sent"]
    assert SENT - UNSEEN <= summary["frames_sent"] <= SENT, (summary, relayed)
    assert _frames_in(out) == summary["frames_out"]
    if drop_first:
        assert summary["lost_before_decode"] >= FPS // 2, summary  # the frames up to the second keyframe
