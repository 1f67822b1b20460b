"""Errors that asking again cannot change end a live job at once, in one line, instead of being retried as
"reconnecting": a protocol this FFmpeg build lacks (PyAV's wheel has no SRT) as source or sink, and an HTTP
404 from a real server (Python's ``http.server`` in a separate process)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cyclestream.bundled import STUDENT_MODEL

STREAM = [sys.executable, "-m", "cyclestream", "stream", "--model", str(STUDENT_MODEL), "--backend", "eager"]


def run(*args: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    done = subprocess.run([*STREAM, *args], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr, time.monotonic() - t0


def has_srt() -> bool:
    import av

    try:
        av.open("srt://127.0.0.1:9", "r", timeout=0.5).close()
    except av.error.ProtocolNotFoundError:
        return False
    except Exception:
        return True
    return True


@pytest.mark.skipif(has_srt(), reason="this FFmpeg build has SRT: nothing to refuse")
def test_a_protocol_ffmpeg_lacks_is_one_line_at_once_as_sink_and_source() -> None:
    code, err, _ = run("--source", "lavfi:color=c=red:size=32x32:rate=10", "--sink", "srt://127.0.0.1:9000")
    assert code == 2 and "no srt:// protocol" in err and "try another --codec" not in err, err
    assert err.strip().splitlines()[-1].startswith("cyclestream: error: cannot write srt://127.0.0.1:9000")
    code, err, _ = run("--source", "srt://127.0.0.1:9000", "--sink", "null")
    assert code != 0 and "no srt:// protocol" in err and "reconnecting" not in err, err


def test_an_http_404_is_not_retried(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                               str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        code, err, _ = run("--source", f"http://127.0.0.1:{port}/live/missing.m3u8", "--sink", "null")
    finally:
        server.kill()
        server.wait()
    assert code != 0 and "404" in err and "reconnecting" not in err, err
