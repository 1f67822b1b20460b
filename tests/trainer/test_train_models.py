"""The seed systems: DCGAN and pix2pix each run a tiny epoch and write loadable files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from cyclestream.engine.checkpoint import load_model
from cyclestream.trainer.dcgan import load_dcgan
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import (
    DataOptions,
    ModelOptions,
    OptimOptions,
    RunOptions,
    TrainingError,
    TrainOptions,
)
from cyclestream.trainer.plot import read_log


def test_dcgan_one_epoch(tmp_path: Path, draw: Any) -> None:
    data = draw.squares(tmp_path / "faces", 8, size=20)
    opts = TrainOptions(
        data=DataOptions(data=data, crop_size=16),
        model=ModelOptions(model="dcgan", ngf=4, ndf=4, nz=8),
        optim=OptimOptions(epochs=1, batch_size=4),
        run=RunOptions(out=tmp_path / "run", progress=False, threads=1),
    )
    result = train(opts)
    assert result.finished and result.position.iteration == 2
    entries = read_log(result.run_dir / "log.jsonl")
    assert all(math.isfinite(e[k]) for e in entries for k in ("D_real", "D_fake", "G"))
    assert Image.open(result.run_dir / "samples" / "epoch_001.png").size == (8 * 96 + 14, 8 * 96 + 14)
    g = load_dcgan(result.run_dir / "G.safetensors")
    assert g(torch.randn(2, 8, 1, 1)).shape == (2, 3, 16, 16)
    with pytest.raises(TrainingError, match="power of two"):
        train(TrainOptions(data=DataOptions(data=data, crop_size=24), model=ModelOptions(model="dcgan")))


def test_pix2pix_one_epoch(tmp_path: Path, draw: Any) -> None:
    data = draw.aligned(tmp_path / "facades", 3, size=32)
    opts = TrainOptions(
        data=DataOptions(data=data, load_size=36, crop_size=32, name_a="labels", name_b="photos"),
        model=ModelOptions(model="pix2pix", ngf=4, ndf=4, n_layers_d=2),
        optim=OptimOptions(epochs=1, epochs_decay=0),
        run=RunOptions(out=tmp_path / "run", progress=False, threads=1),
    )
    result = train(opts)
    assert result.finished and result.position.iteration == 3
    entries = read_log(result.run_dir / "log.jsonl")
    assert all(math.isfinite(e[k]) for e in entries for k in ("G_GAN", "G_L1", "D_real", "D_fake"))
    model = load_model(result.run_dir / "G.safetensors")
    assert model.spec.kind == "unet" and model.spec.n_blocks == 5 and model.spec.norm == "batch"
    assert model.spec.use_dropout and model.metadata["direction"] == "labels -> photos"
    assert model.generator(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert (result.run_dir / "samples" / "epoch_001.png").exists()


def test_pix2pix_needs_a_power_of_two_crop(tmp_path: Path) -> None:
    opts = TrainOptions(data=DataOptions(data=tmp_path, crop_size=48), model=ModelOptions(model="pix2pix"))
    with pytest.raises(TrainingError, match="multiple of 2"):
        train(opts)
