"""A live source's audio is passed through beside the translated video, on the same clock: copied where
the sink's container holds the codec, encoded anew where it does not.

Senders are Debian's ffmpeg in a separate process (MPEG-TS over UDP with ADTS AAC; an RTMP publish
with AAC, as OBS does; files with AAC, ADTS AAC or a camera's G.711 played with ``--realtime``), the
receiver the real ``cyclestream stream`` command, and the recordings are read back with Debian's
ffprobe and ffmpeg (timestamps, codecs, the tone that was sent, a flash and its beep still together).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.engine.media.ffprobe import ffprobe_streams
from tests.engine.media.test_live_senders import free_port, stop, wait_until_bound

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
            stop(proc)
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
    if summary["audio"]["copied"]:
        assert summary["audio"]["packets_written"] == audio["packets"], (summary, spans)


def _tone(path: Path) -> float:
    """The loudest frequency of the recording's audio (Hz), as Debian's ffmpeg decodes it."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "a:0", "-ac", "1", "-ar", "8000", "-f",
                          "f32le", "-"], capture_output=True, check=True).stdout
    samples = np.frombuffer(raw, np.float32)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[spectrum.argmax()])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_udp_mpegts_aac_is_recorded_beside_the_video(tiny_model: Path, tmp_path: Path, suffix: str) -> None:
    """ADTS AAC from MPEG-TS has no decoder config: MP4 and Matroska need one in their header."""
    port = free_port()
    out = tmp_path / f"live{suffix}"
    job = _stream(tiny_model, "--source", f"udp://127.0.0.1:{port}", "--sink", str(out))
    wait_until_bound(port)
    summary = _finish(job, _sender(f"udp://127.0.0.1:{port}?pkt_size=1316", "mpegts"))
    _check_in_step(out, summary)


def test_no_audio_records_the_video_alone(tiny_model: Path, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "silent.mkv"
    job = _stream(tiny_model, "--source", f"udp://127.0.0.1:{port}", "--sink", str(out), "--no-audio")
    wait_until_bound(port)
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


def _clip(path: Path, audio_codec: str, rate: int = 48000) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-f", "lavfi", "-i",
         f"sine=frequency=440:sample_rate={rate}", "-t", str(SECONDS), "-c:v", "libx264", "-g", "15", "-c:a",
         audio_codec, str(path)], check=True)
    return path


@pytest.mark.parametrize(("clip_name", "recording"), [("clip.mp4", "played.mkv"), ("clip.ts", "played.mp4")])
def test_a_realtime_file_keeps_its_aac(tiny_model: Path, tmp_path: Path, clip_name: str, recording: str) -> None:
    """An MPEG-TS file's ADTS AAC too: its config comes from the first header even though the file is read
    only when the pipeline asks for frames."""
    clip, out = _clip(tmp_path / clip_name, "aac"), tmp_path / recording
    summary = _finish(_stream(tiny_model, "--source", str(clip), "--realtime", "--sink", str(out)))
    _check_in_step(out, summary)
    assert summary["audio"] == {**summary["audio"], "codec": "aac", "copied": True, "encoded_as": None}


@pytest.mark.parametrize("recording", ["g711.mp4", "g711.flv", "g711.ts"])
def test_audio_the_container_cannot_hold_is_encoded_anew(tiny_model: Path, tmp_path: Path, recording: str) -> None:
    """G.711 (an RTSP camera's audio) cannot go into MP4, FLV (RTMP) or MPEG-TS: it comes out as AAC, in step
    with the video and still the sender's 440 Hz tone."""
    clip, out = _clip(tmp_path / "camera.mov", "pcm_mulaw", rate=8000), tmp_path / recording
    summary = _finish(_stream(tiny_model, "--source", str(clip), "--realtime", "--sink", str(out)))
    _check_in_step(out, summary)
    assert summary["audio"] == {**summary["audio"], "codec": "pcm_mulaw", "copied": False, "encoded_as": "aac"}
    assert [s["codec_name"] for s in ffprobe_streams(out) if s["codec_type"] == "audio"] == ["aac"]
    assert _tone(out) == pytest.approx(440, abs=10)


def _flash_time(path: Path) -> float:
    """When the picture changes most (the sender's flash, through the model), by the recording's own times."""
    times = [float(t.strip(",")) for t in subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0",
         str(path)], capture_output=True, text=True, check=True).stdout.split() if t.strip(",")]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "v:0", "-fps_mode", "passthrough", "-f",
                          "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout  # a frame each
    means = np.frombuffer(raw, np.uint8).reshape(len(times), -1).mean(axis=1)
    change = np.abs(means - np.median(means))  # the flash is 5 frames of 60: the median is the black picture
    k = int(np.argmax(change))
    while k > 0 and change[k - 1] > change.max() / 2:  # back to the first frame of the flash
        k -= 1
    return times[k]


def _beep_time(path: Path) -> float:
    """When the sender's beep starts, by the recording's own times."""
    start = float(next(s["start_time"] for s in ffprobe_streams(path) if s["codec_type"] == "audio"))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "a:0", "-ac", "1", "-ar", "8000", "-f",
                          "f32le", "-"], capture_output=True, check=True).stdout
    loud = np.abs(np.frombuffer(raw, np.float32))
    return start + int(np.argmax(loud > loud.max() / 2)) / 8000


def test_a_flash_and_its_beep_stay_together(tiny_model: Path, tmp_path: Path) -> None:
    """Sync by content, not only by timestamps: the sender flashes the picture white and beeps at the same
    moment (2 s in); in the recording the translated flash and the beep are still within one frame."""
    port = free_port()
    out = tmp_path / "sync.mkv"
    job = _stream(tiny_model, "--source", f"udp://127.0.0.1:{port}", "--sink", str(out))
    wait_until_bound(port)
    sender = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "color=black:size=160x120:rate=15", "-f", "lavfi", "-i",
         "sine=frequency=1000:sample_rate=48000", "-t", str(SECONDS), "-vf",
         "drawbox=color=white:t=fill:enable='between(t,2,2.3)'", "-af", "volume=0:enable='lt(t,2)+gt(t,2.3)'",
         "-c:v", "libx264", "-g", "15", "-tune", "zerolatency", "-c:a", "aac", "-f", "mpegts",
         f"udp://127.0.0.1:{port}?pkt_size=1316"], stdin=subprocess.DEVNULL)
    summary = _finish(job, sender)
    assert summary["audio"]["copied"], summary
    assert abs(_flash_time(out) - _beep_time(out)) < 1 / 15 + 0.03, (_flash_time(out), _beep_time(out))
