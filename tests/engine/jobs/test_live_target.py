"""A running ``stream`` switches a StarGAN's target on a line of standard input (the next batch uses it);
a line that names no target is logged and changes nothing."""

from __future__ import annotations

import io
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.jobs.live_target import follow_stdin
from tests.engine.stargan_files import randomised_stargan

DOMAINS = ["openmoji", "twemoji", "noto"]


@pytest.fixture
def stargan(tmp_path: Path) -> LoadedModel:
    return load_model(randomised_stargan(tmp_path / "star.safetensors", DOMAINS))


def test_each_line_sets_the_target_and_a_bad_one_is_logged(
    stargan: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    backend = prepare_backend(stargan, RunOptions(backend="eager", target="openmoji"), 16, 16)
    with caplog.at_level(logging.INFO, logger="cyclestream"):
        thread = follow_stdin(stargan, backend, io.StringIO("noto\nemoji\n\n"))
        assert thread is not None
        thread.join(10)
    assert backend.conditioning[0].tolist() == [[0.0, 0.0, 1.0]]  # noto; "emoji" left it as it was
    assert "ignored --target 'emoji' is not a target" in caplog.text and "\n" not in caplog.records[-1].message


def _by_hand(model: LoadedModel, rgb: np.ndarray, index: int) -> np.ndarray:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = model.generator(x, torch.eye(3)[index : index + 1])
    return ((y[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).numpy()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg's lavfi sources")
def test_a_stdin_line_switches_a_running_streams_target(stargan: LoadedModel, tmp_path: Path) -> None:
    out = tmp_path / "live.mkv"
    cmd = [sys.executable, "-m", "cyclestream", "-q", "stream", "--model", str(stargan.path), "--source",
           "lavfi:color=c=0x3080c0:size=64x64:rate=10", "--sink", str(out), "--target", "openmoji", "--backend",
           "eager", "--temporal", "off", "--codec", "ffv1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.stat().st_size > 2000) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.stdin is not None
        proc.stdin.write("noto\n")
        proc.stdin.flush()
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
    colour = np.empty((64, 64, 3), np.uint8)
    colour[:] = (0x30, 0x80, 0xC0)
    openmoji, noto = _by_hand(stargan, colour, 0), _by_hand(stargan, colour, 2)
    assert np.abs(openmoji - noto).mean() > 10  # the two targets look apart
    first, last = frames[0], frames[-1]  # the codec's YUV round trip: nearer to one target, not equal to it
    assert np.abs(first - openmoji).mean() < np.abs(first - noto).mean()
    assert np.abs(last - noto).mean() < np.abs(last - openmoji).mean()
    assert np.abs(first - last).mean() > 10 and np.array_equal(frames[0], frames[1])
