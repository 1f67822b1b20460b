"""``--model style``: fast neural style's perceptual loss (pytorch/examples ``fast_neural_style``) with VGG
features read from a torchvision-layout file — checked against the reference's slices of a VGG16 written out
here —, a run that trains, resumes bit for bit and writes a model file that loads as ``fast_style``, and
one-line refusals of a missing or wrong VGG file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainingError, TrainOptions
from cyclestream.trainer.style import StyleTask
from cyclestream.trainer.task import Runtime
from tests.trainer.helpers import Killed, assert_same_runs, kill_at, override, quiet_run

CPU = Runtime(torch.device("cpu"))
# torchvision's vgg16 ``features`` configuration, narrow: convolutions (widths) and "M" max pools.
VGG16_CFG = [4, 4, "M", 6, 6, "M", 8, 8, 8, "M", 8, 8, 8, "M", 8, 8, 8, "M"]
SLICE_ENDS = (4, 9, 16, 23)  # the reference's slices features[0:4], [4:9], [9:16], [16:23]: relu1_2..relu4_3


def small_vgg16(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers).eval()


@pytest.fixture
def vgg_file(tmp_path: Path) -> tuple[nn.Sequential, Path]:
    """A whole-model torchvision state dict: ``features.N`` and a classifier the loss never reads."""
    net = small_vgg16(7)
    state = {f"features.{k}": v for k, v in net.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 8)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    return net, path


@pytest.fixture
def tiny_style(tmp_path: Path, vgg_file: tuple[nn.Sequential, Path]) -> Callable[..., TrainOptions]:
    """Four 20 px content images, one 24 px style image; ngf 4, one block, batch 2, 16 px crops."""
    rng = np.random.default_rng(0)
    (tmp_path / "content").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "content" / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(tmp_path / "style.png")

    def make(out: str = "run", **overrides: Any) -> TrainOptions:
        opts = TrainOptions(
            data=DataOptions(data=tmp_path / "content", load_size=20, crop_size=16),
            model=ModelOptions(
                model="style", ngf=4, n_blocks=1, style=tmp_path / "style.png", vgg=vgg_file[1], tv_weight=1e-3
            ),
            optim=OptimOptions(epochs=1, epochs_decay=1, batch_size=2, lr=1e-3),
            run=quiet_run(tmp_path / out, samples=1, precision="fp32", compile="off", channels_last="off"),
        )
        return override(opts, **overrides)

    return make


def _reference_losses(
    vgg: nn.Sequential, y: torch.Tensor, x: torch.Tensor, s: torch.Tensor, cw: float, sw: float
) -> tuple[float, float]:
    """neural_style.py's losses: ImageNet-normalised inputs on 0..1, the four slices, Gram / (c·h·w), MSE."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)

    def feats(img: torch.Tensor) -> list[torch.Tensor]:
        h, out, start = (img / 255.0 - mean) / std, [], 0
        for end in SLICE_ENDS:
            h = vgg[start:end](h)
            out.append(h)
            start = end
        return out

    def gram(f: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = f.shape
        v = f.view(b, c, hh * ww)
        return v.bmm(v.transpose(1, 2)) / (c * hh * ww)

    mse = nn.MSELoss()
    fy, fx, fs = feats(y), feats(x), feats(s.repeat(len(x), 1, 1, 1))
    content = cw * mse(fy[1], fx[1])
    style = sw * sum(mse(gram(a), gram(b)) for a, b in zip(fy, fs, strict=True))
    return float(content), float(style)


def test_the_step_computes_the_reference_perceptual_loss(
    tiny_style: Callable[..., TrainOptions], vgg_file: tuple[nn.Sequential, Path], tmp_path: Path
) -> None:
    options = override(tiny_style(), tv_weight=0.0).resolved()
    task = StyleTask(options, CPU)
    task.wrap()
    batch = {"image": torch.rand(2, 3, 16, 16) * 2 - 1}
    x = (batch["image"] + 1) * 127.5
    with torch.no_grad():
        y = task.nets["G"](x)
    style = torch.from_numpy(np.asarray(Image.open(tmp_path / "style.png").convert("RGB")).transpose(2, 0, 1).copy())
    with torch.no_grad():
        content, style_loss = _reference_losses(vgg_file[0], y, x, style[None].float(), 1e5, 1e10)
    losses = task.step(batch)
    assert float(losses["content"]) == pytest.approx(content, rel=1e-4)
    assert float(losses["style"]) == pytest.approx(style_loss, rel=1e-4)
    assert float(losses["tv"]) == 0.0


def test_a_style_run_trains_resumes_bit_for_bit_and_loads_as_fast_style(
    tiny_style: Callable[..., TrainOptions],
) -> None:
    reference = train(tiny_style("reference")).run_dir
    with pytest.raises(Killed):
        train(tiny_style("killed", save_every_iters=1), on_iteration=kill_at(3))
    result = train(tiny_style("killed", resume=True, save_every_iters=1))
    assert result.finished
    assert_same_runs(reference, result.run_dir)
    model = load_model(reference / "style.safetensors")
    assert model.family.name == "fast_style" and model.spec.to_dict()["n_blocks"] == 1
    assert (reference / "samples" / "epoch_002.png").is_file() and (reference / "losses.png").is_file()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"not a pickle at all"), "not a model file|not a readable PyTorch"),
        (lambda p: torch.save({"model.1.weight": torch.zeros(4, 3, 7, 7)}, p), "no VGG features"),
        (
            lambda p: torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3), "features.0.bias": torch.zeros(4)}, p),
            "has no relu1_2",
        ),
    ],
    ids=["missing", "garbage", "a-generator", "too-short"],
)
def test_a_missing_or_wrong_vgg_file_is_one_line_saying_where_to_get_one(
    tiny_style: Callable[..., TrainOptions],
    tmp_path: Path,
    make: Callable[[Path], object],
    match: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad_vgg.pth"
    make(bad)
    with pytest.raises(TrainingError, match=match) as err:
        train(tiny_style(vgg=bad))
    text = str(err.value)
    assert str(bad) in text and "\n" not in text and "download.pytorch.org/models/vgg16" in text
    assert not (tmp_path / "run").exists()
    opts = tiny_style()
    argv = [
        "train",
        "--model",
        "style",
        "--data",
        str(opts.data.data),
        "--style",
        str(opts.model.style),
        "--vgg",
        str(bad),
        "--crop-size",
        "16",
        "--out",
        str(tmp_path / "cli"),
    ]
    assert main(argv) != 0
    assert "download.pytorch.org" in capsys.readouterr().err


def test_a_run_without_style_or_vgg_is_one_line_before_any_file(
    tiny_style: Callable[..., TrainOptions], tmp_path: Path
) -> None:
    for missing, match in (("style", "needs --style IMAGE"), ("vgg", "needs --vgg FILE.*download.pytorch.org")):
        with pytest.raises(TrainingError, match=match) as err:
            train(tiny_style(**{missing: None}))
        assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
