"""The seed systems: DCGAN and pix2pix each run a tiny epoch and write loadable files."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from cyclestream.engine.checkpoint import load_model
from cyclestream.trainer.dcgan import load_dcgan
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import DataOptions, ModelOptions, TrainingError, TrainOptions
from cyclestream.trainer.plot import read_log
from tests.engine.official_networks import UnetGenerator, get_norm_layer


def test_dcgan_one_epoch(tiny_dcgan: Callable[..., TrainOptions]) -> None:
    result = train(tiny_dcgan("run"))
    assert result.finished and result.position.iteration == 2
    entries = read_log(result.run_dir / "log.jsonl")
    assert all(math.isfinite(e[k]) for e in entries for k in ("D_real", "D_fake", "G"))
    assert Image.open(result.run_dir / "samples" / "epoch_001.png").size == (8 * 96 + 14, 8 * 96 + 14)
    g = load_dcgan(result.run_dir / "G.safetensors")
    assert g(torch.randn(2, 8, 1, 1)).shape == (2, 3, 16, 16)
    with pytest.raises(TrainingError, match="power of two"):
        train(tiny_dcgan("odd", crop_size=24))


def test_pix2pix_one_epoch(tiny_pix2pix: Callable[..., TrainOptions]) -> None:
    result = train(tiny_pix2pix("run"))
    assert result.finished and result.position.iteration == 3
    entries = read_log(result.run_dir / "log.jsonl")
    assert all(math.isfinite(e[k]) for e in entries for k in ("G_GAN", "G_L1", "D_real", "D_fake"))
    model = load_model(result.run_dir / "G.safetensors")
    assert model.spec.kind == "unet" and model.spec.n_blocks == 6 and model.spec.norm == "batch"
    assert model.spec.use_dropout and model.metadata["direction"] == "labels -> photos"
    assert model.generator(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert (result.run_dir / "samples" / "epoch_001.png").exists()
    # the official code's file beside it: its define_G (unet_64, batch norm, dropout) loads it strictly
    official = UnetGenerator(3, 3, 6, ngf=model.spec.ngf, norm_layer=get_norm_layer("batch"), use_dropout=True)
    official.load_state_dict(torch.load(result.run_dir / "latest_net_G.pth", weights_only=True))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(official.eval()(x), model.generator(x))


def test_pix2pix_needs_a_power_of_two_crop(tmp_path: Path) -> None:
    opts = TrainOptions(data=DataOptions(data=tmp_path, crop_size=48), model=ModelOptions(model="pix2pix"))
    with pytest.raises(TrainingError, match="multiple of 2"):
        train(opts)
