"""``cyclestream stylize``: Gatys et al.'s optimisation of a still with the PyTorch tutorial's layers and
weights, through a VGG19-layout file written here; the tutorial's loss, computed independently, falls;
the result is written whole, and a wrong VGG file is one line with nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cyclestream.cli import main

VGG19_CFG = [4, 4, "M", 6, 6, "M", 8, 8, 8, 8, "M"]  # torchvision's vgg19 ``features``, narrow and cut short


def small_vgg19(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    with torch.no_grad():  # activations that grow with depth, so that every style layer weighs in
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                layer.weight.mul_(2.0)
    return nn.Sequential(*layers).eval()


def tutorial_objective(
    vgg: nn.Sequential, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor
) -> torch.Tensor:
    """The tutorial's objective: normalised 0..1 input, conv_1..conv_5 style Grams / (a·b·c·d), conv_4
    content, weights 1e6 and 1."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)

    def convs(x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - mean) / std
        for layer in vgg:
            h = layer(h.clone()) if isinstance(layer, nn.ReLU) else layer(h)
            if isinstance(layer, nn.Conv2d):
                out.append(h)
            if len(out) == 5:
                break
        return out

    def gram(f: torch.Tensor) -> torch.Tensor:
        a, b, c, d = f.shape
        m = f.view(a * b, c * d)
        return m @ m.t() / (a * b * c * d)

    fi = convs(image)
    with torch.no_grad():
        fc, fs = convs(content), convs(style)
    s = sum(nn.functional.mse_loss(gram(x), gram(y)) for x, y in zip(fi, fs, strict=True))
    return 1e6 * s + nn.functional.mse_loss(fi[3], fc[3])


def tutorial_loss(vgg: nn.Sequential, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> float:
    with torch.no_grad():
        return float(tutorial_objective(vgg, image, content, style))


def tutorial_lbfgs(vgg: nn.Sequential, content: torch.Tensor, style: torch.Tensor, steps: int) -> torch.Tensor:
    """The tutorial's run: L-BFGS on a copy of the content image, clamped to 0..1 in every evaluation."""
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], max_iter=min(20, steps))
    done = [0]

    def closure() -> torch.Tensor:
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        loss = tutorial_objective(vgg, image, content, style)
        loss.backward()
        done[0] += 1
        return loss

    while done[0] < steps:
        optimizer.step(closure)
    with torch.no_grad():
        return image.clamp(0, 1)


def _pixels(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).copy())[None] / 255.0


@pytest.fixture
def stills(tmp_path: Path) -> tuple[nn.Sequential, Path, Path, Path]:
    rng = np.random.default_rng(3)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    yy, xx = np.mgrid[0:24, 0:20]
    Image.fromarray(np.stack([yy * 10, xx * 12, (yy + xx) * 5], -1).astype(np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(style)
    net = small_vgg19(2)
    vgg = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in net.state_dict().items()}, vgg)
    return net, content, style, vgg


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_stylize_lowers_the_tutorial_loss_and_writes_the_result_whole(
    stills: tuple[nn.Sequential, Path, Path, Path], tmp_path: Path, optimizer: str
) -> None:
    net, content, style, vgg = stills
    out = tmp_path / "out" / "styled.png"
    steps = "20"
    argv = ["-q", "stylize", str(content), "--style", str(style), "--vgg", str(vgg), "--steps", steps,
            "--optimizer", optimizer, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = _pixels(out)
    assert result.shape == (1, 3, 24, 20)
    before = tutorial_loss(net, _pixels(content), _pixels(content), _pixels(style))
    after = tutorial_loss(net, result, _pixels(content), _pixels(style))
    assert after < 0.8 * before, (before, after)
    if optimizer == "lbfgs":  # one round of 20 evaluations: the tutorial's own run, to a rounding level or two
        expected = tutorial_lbfgs(net, _pixels(content), _pixels(style), 20).mul(255).round()
        assert (result.mul(255).round() - expected).abs().max() <= 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["styled.png"]


def test_a_wrong_vgg_file_is_one_line_and_nothing_is_written(
    stills: tuple[nn.Sequential, Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, content, style, _ = stills
    bad = tmp_path / "vgg_bn.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, bad)  # no bias: a batch-norm VGG's first conv
    out = tmp_path / "styled.png"
    argv = ["-q", "stylize", str(content), "--style", str(style), "--vgg", str(bad), "--out", str(out)]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "download.pytorch.org" in err
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
