"""A live source's audio is passed through beside the translated video, on the same clock.

Senders are Debian's ffmpeg in a separate process (MPEG-TS over UDP with ADTS AAC; an RTMP publish
with AAC, as OBS does; a file with AAC played with ``--realtime``), the receiver the real
``cyclestream stream`` command, and the recordings are read back with Debian's ffprobe.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.media.test_live_senders import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                       reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh installs them as root)"),
]

SECONDS = 4


def _sender(url: str, fmt: str, seconds: float = SECONDS) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-f", "lavfi", "-i",
         "sine=frequency=440:sample_rate=48000", "-t", str(seconds), "-c:v", "libx264", "-g", "15", "-tune",
         "zerolatency", "-c:a", "aac", "-f", fmt, url],
        stdin=subprocess.DEVNULL,
    )


def _stream(tiny_model: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cyclestream", "-q", "stream", "--model", str(tiny_model), "--temporal", "off",
         "--read-timeout", "1", "--reconnect-for", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _streams(path: Path) -> dict[str, dict[str, float]]:
    """codec type → {start, end} of its packets, as ffprobe reads them."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=codec_type,pts_time,duration_time", "-of", "json",
         str(path)], capture_output=True, text=True, check=True).stdout
    spans: dict[str, dict[str, float]] = {}
    for packet in json.loads(out)["packets"]:
        t = float(packet["pts_time"])
        span = spans.setdefault(packet["codec_type"], {"start": t, "end": t, "packets": 0})
        span["start"], span["packets"] = min(span["start"], t), span["packets"] + 1
        span["end"] = max(span["end"], t + float(packet.get("duration_time", 0)))
    return spans


def _finish(job: subprocess.Popen[str], *senders: subprocess.Popen[bytes]) -> dict:
    try:
        stdout, stderr = job.communicate(timeout=60)
    finally:
        for proc in (job, *senders):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
    assert job.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    return json.loads(stdout)


def _check_in_step(out: Path, summary: dict) -> None:
    spans = _streams(out)
    assert set(spans) == {"video", "audio"}, spans
    video, audio = spans["video"], spans["audio"]
    assert abs(audio["start"] - video["start"]) < 0.1, (spans, summary["audio"])  # the sender starts both together
    assert abs(audio["end"] - video["end"]) < 0.25, spans
    assert video["end"] - video["start"] > SECONDS - 1.5, spans
    assert summary["audio"]["codec"] == "aac" and summary["audio"]["copied"], summary
    assert summary["audio"]["packets_written"] == audio["packets"], (summary, spans)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_udp_mpegts_aac_is_recorded_beside_the_video(tiny_model: Path, tmp_path: Path, suffix: str) -> None:
    """ADTS AAC from MPEG-TS has no decoder config: MP4 and Matroska need one in their header."""
    port = free_port()
    out = tmp_path / f"live{suffix}"
    job = _stream(tiny_model, "--source", f"udp://127.0.0.1:{port}", "--sink", str(out))
    time.sleep(1.5)
    summary = _finish(job, _sender(f"udp://127.0.0.1:{port}?pkt_size=1316", "mpegts"))
    _check_in_step(out, summary)


def test_no_audio_records_the_video_alone(tiny_model: Path, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "silent.mkv"
    job = _stream(tiny_model, "--source", f"udp://127.0.0.1:{port}", "--sink", str(out), "--no-audio")
    time.sleep(1.5)
    summary = _finish(job, _sender(f"udp://127.0.0.1:{port}?pkt_size=1316", "mpegts"))
    assert set(_streams(out)) == {"video"} and summary["audio"] is None


def test_an_rtmp_publish_keeps_its_aac(tiny_model: Path, tmp_path: Path) -> None:
    """As OBS or FFmpeg publish: FLV with AAC, pushed to cyclestream listening as the RTMP server."""
    port = free_port(socket.SOCK_STREAM)
    url = f"rtmp://127.0.0.1:{port}/live/key"
    out = tmp_path / "published.mp4"
    job = _stream(tiny_model, "--source", url + "?listen", "--sink", str(out))
    time.sleep(2.0)  # listening
    summary = _finish(job, _sender(url, "flv"))
    _check_in_step(out, summary)


def test_a_realtime_file_keeps_its_aac(tiny_model: Path, tmp_path: Path) -> None:
    clip, out = tmp_path / "clip.mp4", tmp_path / "played.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-f", "lavfi", "-i",
         "sine=frequency=440:sample_rate=48000", "-t", str(SECONDS), "-c:v", "libx264", "-g", "15", "-c:a", "aac",
         str(clip)], check=True)
    summary = _finish(_stream(tiny_model, "--source", str(clip), "--realtime", "--sink", str(out)))
    _check_in_step(out, summary)
