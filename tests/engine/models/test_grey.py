"""Grey generators (official ``--input_nc 1`` / ``--output_nc 1``) translate, converted at the edges as the
official code converts them: the input is PIL's ``convert("L")`` of the frame (its ``Grayscale(1)``
transform), scaled ``x / 127.5 - 1``; a grey output is tiled to three channels (its ``tensor2im``).

The reference below is that pipeline written out with PIL and numpy, around the official network
(tests/engine/official_networks.py), independently of engine/backends/tensors.py.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import CheckpointError
from tests.engine import official_networks as ref


def official_file(tmp_path: Path, input_nc: int, output_nc: int) -> tuple[torch.nn.Module, Path]:
    net = ref.ResnetGenerator(input_nc, output_nc, ngf=4, norm_layer=ref.get_norm_layer("instance"), n_blocks=2)
    ref.init_weights_normal(net, seed=input_nc * 10 + output_nc)
    path = tmp_path / f"grey_{input_nc}to{output_nc}_net_G.pth"
    torch.save(net.state_dict(), path)
    return net.eval(), path


def official_output(net: torch.nn.Module, rgb: np.ndarray, input_nc: int) -> np.ndarray:
    """test.py on one image: Grayscale(1) when input_nc is 1, ToTensor, Normalize(0.5, 0.5); tensor2im."""
    image = Image.fromarray(rgb)
    pixels = np.asarray(image.convert("L"))[..., None] if input_nc == 1 else np.asarray(image)
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = net((x - 0.5) / 0.5)[0].numpy()
    if y.shape[0] == 1:
        y = np.tile(y, (3, 1, 1))
    return (np.transpose(y, (1, 2, 0)) + 1) / 2.0 * 255.0


def colourful(height: int, width: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize(("input_nc", "output_nc"), [(1, 1), (1, 3), (3, 1)])
def test_a_grey_generator_translates_an_image_as_test_py_does(tmp_path: Path, input_nc: int, output_nc: int) -> None:
    net, path = official_file(tmp_path, input_nc, output_nc)
    rgb = colourful(30, 42, 0)  # not a multiple of 4: padded and cropped back as for RGB
    Image.fromarray(rgb).save(tmp_path / "in.png")
    assert main(["-q", "translate", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", str(path),
                 "--backend", "eager"]) == 0  # fmt: skip
    got = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(float)
    want = official_output(net, np.pad(rgb, ((1, 1), (1, 1), (0, 0)), mode="reflect"), input_nc)[1:-1, 1:-1]
    assert np.abs(got - want).max() <= 1.0
    if output_nc == 1:
        assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_a_grey_generator_translates_a_video(tmp_path: Path) -> None:
    net, path = official_file(tmp_path, 1, 1)
    frames = [colourful(32, 48, s) for s in range(3)]
    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "bgr0"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    dst = tmp_path / "out.mkv"
    assert main(["-q", "translate", str(src), str(dst), "--model", str(path), "--backend", "eager", "--codec", "ffv1",
                 "--pix-fmt", "bgr0", "--temporal", "off", "--no-preview"]) == 0  # fmt: skip
    with av.open(str(dst)) as container:
        got = [f.to_ndarray(format="rgb24").astype(float) for f in container.decode(video=0)]
    assert len(got) == 3
    for rgb, out in zip(frames, got, strict=True):
        assert np.abs(out - official_output(net, rgb, 1)).max() <= 1.0


@pytest.mark.parametrize("backend_name", ["onnxruntime", "openvino"])
def test_every_cpu_backend_runs_a_grey_generator(tmp_path: Path, backend_name: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    pytest.importorskip(backend_name, reason=f"{backend_name} is not installed")
    if backend_name == "onnxruntime":
        pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path / "cache"))
    _, path = official_file(tmp_path, 1, 1)
    model = load_model(path)
    frames = torch.from_numpy(np.stack([colourful(32, 32, 5), colourful(32, 32, 6)]))
    backend = prepare_backend(model, RunOptions(backend=backend_name, batch_size=2), 32, 32)
    eager = prepare_backend(model, RunOptions(backend="eager", batch_size=2), 32, 32)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = model.generator(x)
    assert float((backend.infer(x) - expected).norm() / expected.norm()) <= 1e-4
    assert (backend.run(frames).int() - eager.run(frames).int()).abs().max() <= 1
    backend.close()
    eager.close()


def test_info_says_grey_and_other_channel_counts_are_one_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _, path = official_file(tmp_path, 1, 1)
    assert main(["info", str(path)]) == 0
    assert "an image (1 channel, grey: frames are converted to it)" in capsys.readouterr().out
    _, four = official_file(tmp_path, 4, 3)
    with pytest.raises(CheckpointError, match="takes 4 and gives 3 image channels: frames convert to and from 1"):
        prepare_backend(load_model(four), RunOptions(backend="eager"), 32, 32)
    Image.fromarray(colourful(32, 32, 1)).save(tmp_path / "in.png")
    assert main(["translate", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", str(four)]) != 0
    err = capsys.readouterr().err
    assert "4 and gives 3 image channels" in err and "Traceback" not in err and not (tmp_path / "out.png").exists()
