"""Batch-norm and dropout generators run as the official ``test.py`` runs them.

The reference is the official networks written out in tests/engine/official_networks.py, run the way
``test.py`` runs them: in training mode by default (a batch norm on each frame's own statistics, batch
1; dropout dropping), in eval mode with ``--eval``.  Files are official ``latest_net_G.pth`` state dicts
of those networks, with running statistics far from any frame's, so the two ways differ by a lot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.models.runtime_norm import FrameBatchNorm2d, as_run
from cyclestream.engine.options import OptionError
from tests.engine import official_networks as ref
from tests.engine.backends.cpu_backends import CPU_BACKENDS, skip_unless_installed

SIDE = 32


@pytest.fixture(scope="module")
def bn_resnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    net = ref.ResnetGenerator(3, 3, ngf=4, norm_layer=ref.get_norm_layer("batch"), n_blocks=2)
    ref.init_weights_normal(net, seed=3)
    path = tmp_path_factory.mktemp("bn") / "latest_net_G.pth"
    torch.save(net.state_dict(), path)
    return net, path


@pytest.fixture(scope="module")
def dropout_unet(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """pix2pix's generator: a batch-norm U-Net whose inner blocks carry dropout 0.5 (6 levels: 64 px)."""
    net = ref.UnetGenerator(3, 3, 6, ngf=4, norm_layer=ref.get_norm_layer("batch"), use_dropout=True)
    ref.init_weights_normal(net, seed=4)
    path = tmp_path_factory.mktemp("unet") / "latest_net_G.pth"
    torch.save(net.state_dict(), path)
    return net, path


def picture(side: int, seed: int) -> np.ndarray:
    """A smooth, varied RGB picture (not noise: the per-frame statistics of a real frame)."""
    y, x = np.mgrid[0:side, 0:side] / side
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(1, 4, 3)
    rgb = np.stack([np.sin(a * 6 * x + y), np.cos(b * 5 * y - x), np.sin(c * 4 * (x + y))], axis=-1)
    return ((rgb + 1) * 127.5).round().astype(np.uint8)


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1


def as_image(t: torch.Tensor) -> np.ndarray:
    return ((t[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def official(net: torch.nn.Module, x: torch.Tensor, *, eval_mode: bool) -> torch.Tensor:
    net.eval() if eval_mode else net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        out = net(x)
    net.load_state_dict(state)  # training mode moved the running statistics; the file did not change
    return out


def translated(model: Path, image: np.ndarray, tmp_path: Path, *flags: str) -> np.ndarray:
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(image).save(src)
    assert main(["-q", "translate", str(src), str(out), "--model", str(model), *flags]) == 0
    return np.asarray(Image.open(out).convert("RGB"))


def test_the_default_is_test_py_default_and_running_is_its_eval(bn_resnet, tmp_path: Path) -> None:
    net, path = bn_resnet
    image = picture(SIDE, 0)
    frame_stats = as_image(official(net, as_tensor(image), eval_mode=False))
    running = as_image(official(net, as_tensor(image), eval_mode=True))
    assert np.abs(frame_stats.astype(int) - running).max() > 20  # the two ways are far apart here
    default = translated(path, image, tmp_path)
    assert np.abs(default.astype(int) - frame_stats).max() <= 1
    asked = translated(path, image, tmp_path, "--norm-stats", "running")
    assert np.abs(asked.astype(int) - running).max() <= 1


def test_frames_of_a_batch_each_get_their_own_statistics(bn_resnet) -> None:
    """test.py runs batch 1: a batch of frames must give each frame what it alone gives."""
    net, path = bn_resnet
    loaded = load_model(path)
    model = as_run(loaded.generator, loaded.spec, "frame", False)
    assert any(isinstance(m, FrameBatchNorm2d) for m in model.modules())
    frames = [as_tensor(picture(SIDE, s)) for s in (1, 2, 3)]
    with torch.no_grad():
        together = model(torch.cat(frames))
    for i, x in enumerate(frames):
        torch.testing.assert_close(together[i : i + 1], official(net, x, eval_mode=False), atol=1e-5, rtol=1e-4)


BACKENDS = CPU_BACKENDS


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_per_frame_statistics_on_every_cpu_backend(bn_resnet, backend_name: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    skip_unless_installed(backend_name)
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path / "cache"))
    net, path = bn_resnet
    backend = prepare_backend(load_model(path), RunOptions(backend=backend_name, batch_size=2), SIDE, SIDE)
    x = torch.cat([as_tensor(picture(SIDE, 5)), as_tensor(picture(SIDE, 6))])
    expected = torch.cat([official(net, x[i : i + 1], eval_mode=False) for i in range(2)])
    got = backend.infer(x)
    backend.close()
    assert float((got - expected).norm() / expected.norm()) <= 1e-4, backend.describe()


def test_dropout_on_is_test_py_dropout_and_off_is_steady(dropout_unet, tmp_path: Path) -> None:
    net, path = dropout_unet
    x = as_tensor(picture(64, 7))
    model = load_model(path)
    on = as_run(model.generator, model.spec, "frame", True)  # the file cannot say it has dropout: sites restored
    torch.manual_seed(21)
    want = official(net, x, eval_mode=False)  # training mode: batch norm on the frame, dropout dropping
    torch.manual_seed(21)
    with torch.no_grad():
        got = on(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        assert not torch.allclose(on(x), on(x))  # new draws every call
        off = as_run(model.generator, model.spec, "frame", False)
        torch.testing.assert_close(off(x), off(x))


def test_dropout_on_is_refused_on_a_backend_that_cannot_draw() -> None:
    with pytest.raises(OptionError, match="on draws new random numbers every call"):
        RunOptions(backend="onnxruntime", dropout="on")


def test_info_and_the_run_say_how_they_run(bn_resnet, dropout_unet, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    assert main(["info", str(bn_resnet[1])]) == 0
    said = capsys.readouterr().out
    assert "runs with     batch norm on each frame's own statistics (the official test.py default" in said
    assert main(["info", str(dropout_unet[1])]) == 0
    assert "dropout off (--dropout on: as the official test.py runs it)" in capsys.readouterr().out
    Image.fromarray(picture(SIDE, 0)).save(tmp_path / "in.png")
    caplog.set_level("INFO", logger="cyclestream")
    assert main(["translate", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", str(bn_resnet[1]),
                 "--norm-stats", "running"]) == 0  # fmt: skip
    assert "model: batch norm on its running statistics (the official test.py --eval)" in caplog.messages
