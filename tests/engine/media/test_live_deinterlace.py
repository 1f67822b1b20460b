"""Interlaced live sources are deinterlaced before the model, as files are.  A broadcast's 25i MPEG-2
(Debian's ``ffmpeg``, top field first) went to the model woven when it came live.  The frames the model
sees are checked against Debian ``ffmpeg``'s own ``bwdif`` of the same file; the UDP recording is read
back with ``ffprobe``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cyclestream.engine.media.live import LiveSource, parse_source
from tests.engine.media.ffprobe import ffprobe_streams
from tests.engine.media.test_live_senders import free_port, stop, wait_until_bound
from tests.engine.media.test_media_round3_deinterlace import FRAMES, _far, _ffmpeg_rgb, _interlaced_ts

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)


def _seen_live(path: Path, mode: str) -> tuple[np.ndarray, LiveSource]:
    source = LiveSource(parse_source(str(path)), realtime=True, audio=False, deinterlace=mode)  # type: ignore[arg-type]
    try:
        return np.stack([f.image for f in source.frames()]), source
    finally:
        source.close()


def test_a_live_source_gives_the_model_what_bwdif_makes_of_the_fields(tmp_path: Path) -> None:
    src = _interlaced_ts(tmp_path / "broadcast.ts")
    reference, woven = _ffmpeg_rgb(src, "bwdif=mode=send_frame"), _ffmpeg_rgb(src, "scale=interl=1")
    seen, source = _seen_live(src, "auto")
    assert len(seen) == len(reference) == FRAMES  # the filter's last frame comes out at the end too
    assert _far(seen, reference) < 0.3
    assert _far(woven, reference) > 1.0
    assert source.deinterlaced is not None and "bwdif" in source.deinterlaced
    off, quiet = _seen_live(src, "off")
    assert _far(off, woven) < 0.3 and quiet.deinterlaced is None


@pytest.mark.slow
def test_an_interlaced_udp_broadcast_is_recorded_progressive(tiny_model: Path, tmp_path: Path) -> None:
    src = _interlaced_ts(tmp_path / "broadcast.ts")
    port, out = free_port(), tmp_path / "live.ts"
    job = subprocess.Popen(
        [sys.executable, "-m", "cyclestream", "stream", "--model", str(tiny_model), "--temporal", "off",
         "--source", f"udp://127.0.0.1:{port}", "--sink", str(out), "--read-timeout", "1", "--reconnect-for", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_bound(port)
        subprocess.run(["ffmpeg", "-v", "error", "-re", "-i", str(src), "-c", "copy", "-f", "mpegts",
                        f"udp://127.0.0.1:{port}?pkt_size=1316"], check=True, timeout=60)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        stop(job)
    assert job.returncode == 0, stderr
    assert "is interlaced: deinterlaced with FFmpeg's bwdif" in stderr, stderr
    summary = json.loads(stdout)
    # Every frame reached the source (the last PES waits for a next one that never comes); the 0.5 s clip
    # arrives while the model is prepared, so the live policy may keep only the newest of them.
    assert summary["frames_sent"] >= FRAMES - 1 and summary["frames_out"] > 0, summary
    video = next(s for s in ffprobe_streams(out) if s["codec_type"] == "video")
    assert video.get("field_order", "progressive") == "progressive"
