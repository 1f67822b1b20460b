"""Video files through the whole pipeline: real PyAV encode → translate → encode → decode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.encode_options import EncodeOptions
from tests.engine.media_checks import audio_packets, decoded_frames, stream_summary, video_times

QUIET = TranslateOptions(temporal="off", progress=False)
LOSSLESS = EncodeOptions(codec="ffv1", crf=None, preset=None, pix_fmt="bgr0")  # decoded output == model output


@pytest.mark.parametrize("container", ["mp4", "mkv"])
@pytest.mark.parametrize("audio", [True, False], ids=["audio", "no-audio"])
def test_odd_size_round_trip_keeps_frames_timestamps_and_audio(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, container: str, audio: bool
) -> None:
    src = make_clip(f"in.{container}", width=250, height=142, frames=20, fps=24, audio=audio)
    out = tmp_path / f"out.{container}"

    report = translate(src, out, tiny_model, QUIET)

    assert report.frames == 20
    before, after = stream_summary(src), stream_summary(out)
    assert (after["width"], after["height"]) == (250, 142)
    assert after["codec"] == "h264" and after["rate"] == before["rate"]
    assert after["audio"] == before["audio"]
    assert video_times(out) == pytest.approx(video_times(src), abs=1e-3)
    assert after["duration"] == pytest.approx(before["duration"], abs=0.05)
    assert audio_packets(out) == audio_packets(src)  # copied, not re-encoded: same bytes, same times
    assert not list(tmp_path.glob(".*partial*"))


def test_variable_frame_rate_timestamps_are_kept(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    src = make_clip("vfr.mkv", width=64, height=48, frames=12, fps=24, vfr=True)
    times = video_times(src)
    assert len(set(np.round(np.diff(times), 3))) == 2  # the clip really is VFR
    out = tmp_path / "vfr_out.mkv"
    translate(src, out, tiny_model, QUIET)
    assert video_times(out) == pytest.approx(times, abs=1e-3)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_every_frame_is_the_model_output_in_order(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, batch_size: int
) -> None:
    src = make_clip("in.mkv", width=38, height=30, frames=10)  # 10 frames, batch 3: a short last batch
    out = tmp_path / "out.mkv"
    options = TranslateOptions(temporal="off", run=RunOptions(batch_size=batch_size), encode=LOSSLESS, progress=False)
    translate(src, out, tiny_model, options)

    backend = prepare_backend(load_model(tiny_model), RunOptions(), 30, 38)
    inputs, outputs = decoded_frames(src), decoded_frames(out)
    assert len(outputs) == len(inputs) == 10
    for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)):
        expected = backend.run(torch.from_numpy(a[None].copy()))[0].numpy().astype(int)
        # A batch of 3 may round a rare pixel differently from a batch of 1 (float summation order).
        diff = np.abs(b.astype(int) - expected)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"frame {i}"


def test_size_option_scales_frames(make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path) -> None:
    src = make_clip("in.mp4", width=64, height=48, frames=4)
    out = tmp_path / "small.mp4"
    translate(src, out, tiny_model, TranslateOptions(temporal="off", run=RunOptions(size=(32, 24)), progress=False))
    assert (stream_summary(out)["width"], stream_summary(out)["height"]) == (32, 24)


def test_odd_dimensions_encode_as_444(make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path) -> None:
    src = make_clip("in.mkv", width=51, height=37, frames=3, codec="ffv1", pix_fmt="yuv444p")
    out = tmp_path / "odd.mp4"
    translate(src, out, tiny_model, QUIET)
    assert (stream_summary(out)["width"], stream_summary(out)["height"]) == (51, 37)
    assert len(video_times(out)) == 3


def test_preview_shows_input_beside_output(make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path) -> None:
    from PIL import Image

    src = make_clip("in.mp4", width=64, height=48, frames=9)
    out = tmp_path / "out.mp4"
    options = TranslateOptions(temporal="off", preview=tmp_path / "p.png", progress=False)
    report = translate(src, out, tiny_model, options)
    assert report.preview == tmp_path / "p.png"
    with Image.open(report.preview) as im:
        assert im.width == 2 * 64 + 4 and im.height > 3 * 48  # three rows of input | output


def test_bf16_matches_fp32_closely(make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path) -> None:
    src = make_clip("in.mkv", width=32, height=32, frames=2)
    results = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.mkv"
        options = TranslateOptions(temporal="off", run=RunOptions(precision=precision), encode=LOSSLESS, progress=False)
        translate(src, out, tiny_model, options)
        results[precision] = np.stack(decoded_frames(out)).astype(np.float32)
    assert np.abs(results["fp32"] - results["bf16"]).mean() < 3.0  # within ~1% of the 0..255 range


def test_reference_kernels_give_the_same_video(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    # --kernels reference swaps the fused instance-norm modules (PyTorch reference path) into the generator.
    src = make_clip("in.mkv", width=40, height=32, frames=3)
    outputs = {}
    for kernels in ("off", "reference"):
        out = tmp_path / f"{kernels}.mkv"
        options = TranslateOptions(temporal="off", run=RunOptions(backend="eager", kernels=kernels), encode=LOSSLESS,
                                   progress=False)
        report = translate(src, out, tiny_model, options)
        assert ("kernels" in report.backend) == (kernels == "reference")
        outputs[kernels] = np.stack(decoded_frames(out)).astype(int)
    assert np.abs(outputs["off"] - outputs["reference"]).max() <= 1
