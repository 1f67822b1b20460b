"""Temporal stability with the bundled model on clips made here: still + noise, a moving object, a hard cut.

The goals of `--temporal on` (issue: "Temporal stability"): still-region flicker ≤ 50% of `off`; PSNR to
the per-frame output ≥ 35 dB over the frame and ≥ 30 dB on the moving parts; the first frame after
a hard cut ≥ 35 dB.  `off` is the per-frame output, bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cyclestream.cli import DEFAULT_MODEL, DEMO_CLIP, main
from cyclestream.engine.backends import Backend
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.jobs.bench_temporal import add_noise, measure, read_frames, run_model
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.temporal import make_stabiliser
from tests.engine.media_checks import decoded_frames, video_times

SIZE = 96


@pytest.fixture(scope="module")
def scenes() -> dict[str, list[np.ndarray]]:
    demo = read_frames(DEMO_CLIP, 60, (SIZE, SIZE))
    background, other = demo[0], demo[50]
    moving = []
    for t in range(16):  # a still scene with an object (a patch of another scene) crossing it
        frame = background.copy()
        x = 4 + 4 * t
        frame[30:62, x : x + 28] = other[30:62, 30:58]
        moving.append(frame)
    return {"still": [background] * 12, "moving": moving, "cut": [background] * 8 + [other] * 8}


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    b = prepare_backend(load_model(DEFAULT_MODEL), RunOptions(backend="eager"), SIZE, SIZE)
    yield b
    b.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["still", "moving", "cut"])
def test_on_meets_the_goals(scenes: dict[str, list[np.ndarray]], backend: Backend, name: str) -> None:
    clean = scenes[name]
    noisy = add_noise(clean, 3.0, seed=1)
    per_frame, _ = run_model(backend, noisy)

    (off, on), cuts = measure(clean, noisy, per_frame, methods=["off", "on"])

    assert off.psnr == 100.0 and off.flicker > 0  # off is the per-frame output
    assert on.flicker <= 0.5 * off.flicker, f"still flicker {on.flicker:.2f} vs off {off.flicker:.2f}"
    assert on.psnr >= 35.0
    if name == "moving":
        assert on.psnr_moving is not None and on.psnr_moving >= 30.0
    if name == "cut":
        assert cuts == [8]
        assert on.psnr_after_cut == 100.0  # restarted: the first frame of the new scene is the per-frame output


@pytest.mark.slow
def test_never_ghosts_where_an_object_moved(scenes: dict[str, list[np.ndarray]], backend: Backend) -> None:
    """Where the object just left, the output shows the background again, not a fading copy of it."""
    clean = scenes["moving"]
    per_frame, _ = run_model(backend, clean)
    stabilise = make_stabiliser("on")
    assert stabilise is not None
    outputs = [stabilise(f, o) for f, o in zip(clean, per_frame, strict=True)]
    left = (slice(30, 62), slice(4, 8))  # covered by the object at t=0, background from t=1 on
    error = np.abs(outputs[2][left].astype(int) - per_frame[2][left]).mean()
    assert error < 2.0, f"a ghost of the object stays behind ({error:.1f} levels)"


def test_off_is_the_per_frame_output_bit_for_bit(tiny_model: Path, tmp_path: Path) -> None:
    clip = tmp_path / "in.mkv"
    frames = add_noise([np.full((48, 64, 3), 120, np.uint8)] * 6, 3.0)
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "bgr0"
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    lossless = EncodeOptions(codec="ffv1", crf=None, preset=None, pix_fmt="bgr0")
    outputs = {}
    for method in ("off", "on"):
        dst = tmp_path / f"{method}.mkv"
        translate(clip, dst, tiny_model, TranslateOptions(progress=False, encode=lossless, temporal=method))
        outputs[method] = np.stack(decoded_frames(dst))
        assert len(video_times(dst)) == 6

    model = prepare_backend(load_model(tiny_model), RunOptions(backend="eager"), 48, 64)
    expected, _ = run_model(model, frames)
    assert np.array_equal(outputs["off"], np.stack(expected))
    assert not np.array_equal(outputs["on"], outputs["off"])  # on does something on a noisy still clip


def test_unknown_method_is_one_line() -> None:
    from cyclestream.engine.errors import CycleStreamError

    with pytest.raises(CycleStreamError, match="unknown --temporal 'wobble'"):
        make_stabiliser("wobble")


@pytest.mark.slow
def test_flow_stabilises_a_still_noisy_scene(scenes: dict[str, list[np.ndarray]], backend: Backend) -> None:
    pytest.importorskip("cv2", reason="--temporal flow needs OpenCV (the dev extra installs it)")
    clean = scenes["still"]
    noisy = add_noise(clean, 3.0, seed=2)
    per_frame, _ = run_model(backend, noisy)
    (off, flow), _ = measure(clean, noisy, per_frame, methods=["off", "flow"])
    assert flow.flicker < off.flicker and flow.psnr >= 35.0 and flow.warp_error is not None


@pytest.mark.slow
def test_bench_temporal_command_prints_the_table_and_a_picture(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = make_clip("clip.mp4", width=64, height=48, frames=8)
    picture, report = tmp_path / "t.png", tmp_path / "t.json"
    code = main(["-q", "bench", "temporal", "--input", str(clip), "--model", str(tiny_model), "--frames", "8",
                 "--methods", "off,blend", "--noise", "0,3", "--json", str(report), "--picture", str(picture)])
    assert code == 0
    table = capsys.readouterr().out
    assert "still flicker" in table and table.count("blend") == 2
    assert json.loads(report.read_text())["reports"][1]["noise"] == 3.0
    assert Image.open(picture).size[0] > 4 * 64


def test_stream_with_temporal_on(tiny_model: Path, tmp_path: Path) -> None:
    from cyclestream.engine.jobs.stream import StreamOptions, run_stream

    out = tmp_path / "live.mkv"
    report = run_stream(StreamOptions(source="lavfi:testsrc2=size=64x48:rate=15", sink=str(out), model=tiny_model,
                                      duration=1.5, stats_interval=0, temporal="on"))
    assert report.stats.frames > 5
    assert len(video_times(out)) == report.stats.frames


@pytest.mark.slow
def test_statistics_lever_is_the_per_frame_model_when_it_keeps_nothing(
    scenes: dict[str, list[np.ndarray]], backend: Backend
) -> None:
    from cyclestream.engine.jobs.bench_temporal import smoothed_stats_outputs

    frames = add_noise(scenes["moving"][:4], 3.0)
    per_frame, _ = run_model(backend, frames)
    model = load_model(DEFAULT_MODEL)
    fresh = smoothed_stats_outputs(model, frames, keep=0.0)
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(fresh, per_frame, strict=True))
    smoothed = smoothed_stats_outputs(model, frames, keep=0.8)
    assert np.array_equal(smoothed[0], fresh[0]) and not np.array_equal(smoothed[3], fresh[3])
