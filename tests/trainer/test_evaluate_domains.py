"""`cyclestream evaluate` on a StarGAN and a dataset of one folder per domain (``data emoji-domains``'s
layout, written here by hand): each domain's held-out images translated to every other domain and scored
against that domain's drawing, beside the identity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model, save_model
from cyclestream.engine.models import build_generator
from cyclestream.engine.models.stargan import StarGANSpec
from tests.engine.stargan_files import randomised_stargan

DOMAINS = ["blue", "green", "red"]  # sorted, as the trainer names them
NAMES = ["aa", "bb", "cc"]
SIZE = 16


def picture(domain: int, name: int) -> np.ndarray:
    rng = np.random.default_rng(10 * domain + name)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    small[..., domain] = 255  # each domain leans to its own colour
    return np.asarray(Image.fromarray(small).resize((SIZE, SIZE), Image.Resampling.BICUBIC))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255**2 / mse))  # the cap evaluate reports


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return randomised_stargan(tmp_path / "star.safetensors", DOMAINS, noise=0.2)


@pytest.fixture
def drawings(model_file: Path) -> list[list[np.ndarray]]:
    """[domain][name]: blue's pictures, and green's and red's made from them by the model with that target, so
    a translation from blue to the right target matches exactly and to a wrong one does not."""
    blue = [picture(0, n) for n in range(len(NAMES))]
    return [blue, *([translated(model_file, x, t) for x in blue] for t in (1, 2))]


@pytest.fixture
def dataset(tmp_path: Path, drawings: list[list[np.ndarray]]) -> Path:
    root = tmp_path / "domains"
    for d, domain in enumerate(DOMAINS):
        (root / "train" / domain).mkdir(parents=True)
        (root / "test" / domain).mkdir(parents=True)
        for n, name in enumerate(NAMES):
            Image.fromarray(drawings[d][n]).save(root / "test" / domain / f"{name}.png")
    (root / "test" / "red" / "extra.png").write_bytes((root / "test" / "red" / "aa.png").read_bytes())  # in one only
    return root


def translated(model_file: Path, image: np.ndarray, target: int) -> np.ndarray:
    g = load_model(model_file).generator
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = g(x, torch.eye(3)[target][None])
    return ((y[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).numpy().astype(np.uint8)


def test_each_target_is_scored_on_the_other_domains_pairs(
    dataset: Path, model_file: Path, drawings: list[list[np.ndarray]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    grid = tmp_path / "grid.png"
    assert main(["-q", "evaluate", str(model_file), "--data", str(dataset), "--backend", "eager", "--json",
                 "--out", str(grid)]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["names"] == len(NAMES) and list(report["targets"]) == DOMAINS
    pairs = [(s, n) for s in range(3) for n in range(len(NAMES))]
    for t, target in enumerate(DOMAINS):
        scored = report["targets"][target]
        mine = [(s, n) for s, n in pairs if s != t]
        assert scored["pairs"] == len(mine)
        identity = np.mean([psnr(drawings[s][n], drawings[t][n]) for s, n in mine])
        model = np.mean([psnr(translated(model_file, drawings[s][n], t), drawings[t][n]) for s, n in mine])
        assert scored["identity"]["psnr"] == pytest.approx(identity, abs=1e-3)
        assert scored["translated"]["psnr"] == pytest.approx(model, abs=0.05)  # eager rounding vs by hand
    green = report["targets"]["green"]  # blue → green matches its own making: far above the identity
    assert green["translated"]["psnr"] > green["identity"]["psnr"] + 10
    with Image.open(grid) as im:  # input, then → target | target for the two others: 5 columns
        assert im.width >= 5 * SIZE and im.height >= len(NAMES) * SIZE


def test_a_model_without_domain_names_is_one_line(dataset: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = StarGANSpec(c_dim=3, ngf=4, repeat_num=1)
    path = save_model(tmp_path / "anon.safetensors", build_generator(spec), spec, {})
    assert main(["-q", "evaluate", str(path), "--data", str(dataset), "--no-grid"]) == 2
    err = capsys.readouterr().err
    assert "anon.safetensors names no domains" in err and err.count("\n") == 1
