"""``cyclestream generate --backend``: a StyleGAN2's and a DCGAN's latent walk on every CPU backend renders
the frames of the reference (rosinality's generator written out in test_stylegan2.py; pytorch/examples'
DCGAN layer list below) within 1e-4 of eager fp32, before anything is encoded."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.jobs.generate import renderer
from cyclestream.engine.jobs.generate_options import GenerateOptions
from tests.engine.backends.cpu_backends import CPU_BACKENDS, skip_unless_installed
from tests.engine.media.ffprobe import ffprobe_streams
from tests.engine.models.test_stylegan2 import SMALL, STYLE_DIM, ReferenceGenerator, _checkpoint, _z

BACKENDS = ["eager", *CPU_BACKENDS]
SEEDS = (4, 9, 2)
AT = torch.tensor([0.0, 0.3, 0.5, 1.0, 1.6, 2.0], dtype=torch.float64)  # keys, between them, the last key
BATCH = 4  # six positions: a full batch and a padded one
NZ, NGF = 8, 4


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "generate-cache"))


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def _between(keys: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two keys around each position and the fraction of the way from the first to the second."""
    i = np.minimum(np.floor(at).astype(int), len(keys) - 2)
    return keys[i], keys[i + 1], (at - i)[:, None]


# ----------------------------------------------------------------------------- StyleGAN2


@pytest.fixture(scope="module")
def stylegan2(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReferenceGenerator, Path, torch.Tensor]:
    """test_stylegan2's small training checkpoint (16 px), with the mean w truncation pulls towards."""
    torch.manual_seed(0)
    ref = ReferenceGenerator(16, SMALL).eval()
    average = torch.randn(STYLE_DIM) * 0.1
    path = tmp_path_factory.mktemp("sg2") / "080000.pt"
    torch.save(_checkpoint(ref, 16, latent_avg=average), path)
    return ref, path, average


def ref_synthesis(ref: ReferenceGenerator, w: torch.Tensor) -> torch.Tensor:
    """The reference Generator.forward from its (truncated) styles on: the same w at every layer, fixed noise."""
    latent = w.unsqueeze(1).repeat(1, ref.log_size * 2 - 2, 1)
    noise = [getattr(ref.noises, f"noise_{i}") for i in range(ref.num_layers)]
    out = ref.conv1(ref.input.input.repeat(w.shape[0], 1, 1, 1), latent[:, 0], noise[0])
    skip = ref.to_rgb1(out, latent[:, 1])
    i = 1
    for conv1, conv2, n1, n2, to_rgb in zip(ref.convs[::2], ref.convs[1::2], noise[1::2], noise[2::2], ref.to_rgbs,
                                            strict=True):  # fmt: skip
        out = conv2(conv1(out, latent[:, i], n1), latent[:, i + 1], n2)
        skip = to_rgb(out, latent[:, i + 2], skip)
        i += 2
    return skip


def stylegan2_walk(ref: ReferenceGenerator, average: torch.Tensor, truncation: float) -> torch.Tensor:
    """The walk's frames at ``AT``: each seed's z mapped to w, truncated towards ``average``, lerped in w."""
    with torch.no_grad():
        w = ref.style(torch.cat([_z(s) for s in SEEDS])).double().numpy()
        w = average.double().numpy() + truncation * (w - average.double().numpy())
        a, b, t = _between(w, AT.numpy())
        return ref_synthesis(ref, torch.from_numpy(a * (1 - t) + b * t).float())


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_every_cpu_backend_renders_the_references_stylegan2_walk(stylegan2, backend_name: str) -> None:
    skip_unless_installed(backend_name)
    ref, path, average = stylegan2
    want = stylegan2_walk(ref, average, 0.6)
    options = GenerateOptions(seeds=SEEDS, truncation=0.6, backend=backend_name, batch_size=BATCH)
    with torch.inference_mode():
        got = renderer(load_model(path), options, torch.device("cpu"))(AT)
    assert got.shape == (len(AT), 3, 16, 16)
    assert _relative(got, want) <= 1e-4, backend_name


# ----------------------------------------------------------------------------- DCGAN


def reference_dcgan() -> nn.Sequential:
    """pytorch/examples dcgan's netG at 16 px (``main.N`` keys), with trained-looking batch-norm statistics."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.ConvTranspose2d(NZ, NGF * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
                        nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF), nn.ReLU(True),
                        nn.ConvTranspose2d(NGF, 3, 4, 2, 1, bias=False), nn.Tanh())  # fmt: skip
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight, 1.0, 0.2)
            nn.init.normal_(m.bias, 0.0, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def dcgan(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Sequential, Path]:
    net = reference_dcgan()
    path = tmp_path_factory.mktemp("dcgan") / "netG_epoch_3.pth"
    torch.save({f"main.{k}": v for k, v in net.state_dict().items()}, path)
    return net, path


def dcgan_walk(net: nn.Sequential) -> torch.Tensor:
    """The walk's frames at ``AT``: each seed's z, along the great circle between keys, lengths lerped."""
    z = torch.cat([torch.randn(1, NZ, generator=torch.Generator().manual_seed(s)) for s in SEEDS]).double().numpy()
    a, b, t = _between(z, AT.numpy())
    na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    omega = np.arccos(np.clip(((a / na) * (b / nb)).sum(1, keepdims=True), -1, 1))
    direction = (np.sin((1 - t) * omega) * a / na + np.sin(t * omega) * b / nb) / np.sin(omega)
    frames = torch.from_numpy(direction * (na * (1 - t) + nb * t)).float()
    with torch.no_grad():
        return net(frames[:, :, None, None])


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_every_cpu_backend_renders_the_references_dcgan_walk(dcgan, backend_name: str) -> None:
    skip_unless_installed(backend_name)
    net, path = dcgan
    want = dcgan_walk(net)
    options = GenerateOptions(seeds=SEEDS, backend=backend_name, batch_size=BATCH)
    with torch.inference_mode():
        got = renderer(load_model(path), options, torch.device("cpu"))(AT)
    assert got.shape == (len(AT), 3, 16, 16)
    assert _relative(got, want) <= 1e-4, backend_name
    assert not math.isclose(float(want[0].abs().mean()), float(want[-1].abs().mean()))  # the walk moves


# ----------------------------------------------------------------------------- the command


def test_generate_writes_the_walk_through_the_backend_asked_for(tmp_path: Path, dcgan) -> None:
    skip_unless_installed("onnxruntime")
    out = tmp_path / "walk.mp4"
    assert main(["-q", "generate", str(dcgan[1]), "--walk", "1", "--fps", "6", "--seeds", "5,6",
                 "--backend", "onnxruntime", "--batch-size", "4", "--out", str(out)]) == 0  # fmt: skip
    (stream,) = ffprobe_streams(out)
    assert (stream["width"], stream["height"]) == (16, 16) and int(stream["nb_frames"]) == 6


def test_a_backend_that_runs_no_latent_input_is_refused_in_one_line(
    tmp_path: Path, dcgan, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "walk.mp4"
    assert main(["generate", str(dcgan[1]), "--walk", "1", "--backend", "tensorrt", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tensorrt" in err and "onnxruntime" in err
    assert not list(tmp_path.iterdir())
