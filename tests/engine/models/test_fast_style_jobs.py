"""A fast neural style file (pytorch/examples ``fast_neural_style``, pixel values in and out) through
``cyclestream stream``, ``serve`` and ``batch``: what each writes or sends back is the reference
TransformerNet of test_fast_style.py on the frames it was given."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.media.synthetic import synthetic_frame, write_clip
from tests.engine.media_checks import decoded_frames
from tests.engine.models.test_fast_style import RefTransformerNet, old_file, reference
from tests.engine.models.test_fast_style import _by_hand as by_hand


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


def flat_psnr(expected: np.ndarray) -> float:
    """What a flat frame of the expected output's mean colour scores against it: the bar that an output
    on the wrong scale (saturated, or flat) cannot pass and the model's own output clears by far."""
    return psnr(np.broadcast_to(expected.mean(axis=(0, 1)).round(), expected.shape), expected)


@pytest.fixture(scope="module")
def styled(tmp_path_factory: pytest.TempPathFactory) -> tuple[RefTransformerNet, Path]:
    """The reference network (built once for the module) and its state dict as an old published file."""
    net = reference(4, 5)
    return net, old_file(net, tmp_path_factory.mktemp("fast_style_jobs") / "mosaic.model")


def lossless_clip(path: Path, width: int, height: int, frames: int, fps: int = 6) -> Path:
    write_clip(path, width=width, height=height, frames=frames, fps=fps, codec="ffv1", pix_fmt="bgr0")
    return path


def assert_pixels_match(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Equal to the reference but for rounding edges: at most 1 level, on under 1 % of the values."""
    assert got.shape == expected.shape, what
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"{what}: max {diff.max()}, {(diff > 0).mean():.2%} off"


# ----------------------------------------------------------------------------- stream


def test_stream_from_a_file_to_a_recording_is_the_reference_on_each_frame(
    styled: tuple[RefTransformerNet, Path], tmp_path: Path
) -> None:
    """The live job (every frame paced at the clip's rate) into a Matroska recording; ffv1 in 4:2:0 costs
    the chroma only: each output frame is the reference on its input to well over 35 dB."""
    net, model = styled
    src = lossless_clip(tmp_path / "cam.mkv", 64, 48, frames=6)
    out = tmp_path / "live.mkv"
    options = "--realtime --codec ffv1 --backend eager --temporal off".split()
    args = ["-q", "stream", "--model", str(model), "--source", str(src), "--sink", str(out), *options]
    assert main(args) == 0
    expected = [by_hand(net, frame) for frame in decoded_frames(src)]
    got = decoded_frames(out)
    assert len(expected) - 1 <= len(got) <= len(expected)  # the live policy may drop the first frame at most
    matched = []
    for i, frame in enumerate(got):  # frames may be dropped: each output is matched to its input
        scores = [psnr(frame, e) for e in expected]
        k = int(np.argmax(scores))
        assert scores[k] >= 35.0 and scores[k] >= flat_psnr(expected[k]) + 6, f"frame {i}: {scores[k]:.1f} dB"
        matched.append(k)
    assert matched == sorted(set(matched)), matched  # in order, none twice


# ----------------------------------------------------------------------------- batch


def test_batch_folder_of_images_and_a_clip_is_the_reference_pixel_for_pixel(
    styled: tuple[RefTransformerNet, Path], tmp_path: Path
) -> None:
    """Images (one not a multiple of 4: padded and cropped back) to PNG, a clip to lossless ffv1 RGB."""
    net, model = styled
    lib = tmp_path / "lib"
    (lib / "stills").mkdir(parents=True)
    pictures = {"stills/a.png": synthetic_frame(3, 64, 48), "stills/b.png": synthetic_frame(11, 38, 30)}
    for rel, image in pictures.items():
        Image.fromarray(image).save(lib / rel)
    clip = lossless_clip(lib / "clip.mkv", 40, 32, frames=3)
    out = tmp_path / "out"
    options = "--backend eager --temporal off --codec ffv1 --pix-fmt bgr0".split()
    args = ["-q", "batch", str(lib), "--out", str(out), "--model", str(model), *options]
    assert main(args) == 0
    for rel, image in pictures.items():
        with Image.open(out / rel) as written:
            assert_pixels_match(np.asarray(written.convert("RGB")), by_hand(net, image), rel)
    inputs, outputs = decoded_frames(clip), decoded_frames(out / "clip.mkv")
    assert len(outputs) == len(inputs) == 3
    for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)):
        assert_pixels_match(b, by_hand(net, a), f"clip.mkv frame {i}")


# ----------------------------------------------------------------------------- serve


@pytest.mark.slow
def test_serve_sends_back_the_reference_on_the_frames_sent(styled: tuple[RefTransformerNet, Path]) -> None:
    """A WebRTC client (aiortc) sends known frames; each frame that comes back, after VP8 up and back, is
    the reference network's output on one of them — not the frame itself, not a flat or saturated one."""
    pytest.importorskip("aiortc", reason="serve needs aiortc: pip install 'cyclestream[serve]'")
    pytest.importorskip("aiohttp", reason="serve needs aiohttp: pip install 'cyclestream[serve]'")
    from cyclestream.engine.serve.probe import Session, analyse, connect, known_frames
    from tests.engine.serve.test_serve import SIZE, serving, status, wait_for

    net, model = styled
    images = known_frames(10, *SIZE)
    expected = [by_hand(net, image) for image in images]

    async def session(url: str) -> Session:
        client = await connect(url, images, 30.0)
        try:
            await asyncio.sleep(2.5)
        finally:
            client.track.stop()
            await client.pc.close()
        return client

    with serving(model, temporal="off") as server:
        client = asyncio.run(session(server.url))
        wait_for(lambda: status(server)["clients"] == 0, 10, "the client to be freed")
    result = analyse(client, images, expected)
    print(result, "flat:", min(flat_psnr(e) for e in expected[1:]))
    assert result.received >= 10, result
    assert result.psnr_to_model >= 30.0 and result.psnr_to_model_p5 >= 26.0, result
    assert result.psnr_to_model >= max(flat_psnr(e) for e in expected[1:]) + 4, result
    assert result.psnr_to_input <= 20.0, result
