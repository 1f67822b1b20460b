"""Fixtures for the trainer tests: tiny synthetic image folders, tiny training options for each model
system, and the command-line flags of a tiny run.  Every run here is on the CPU (also where CUDA is), so
the bit-for-bit checks hold everywhere; the GPU tests ask for CUDA themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainOptions
from tests.trainer.helpers import aligned, override, quiet_run, squares


@pytest.fixture(autouse=True)
def _few_threads() -> Any:
    """Keep the CPU use of the trainer tests modest (another suite may be running)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def draw() -> Any:
    """The image writers of helpers.py, for tests that need their own folders: ``draw.squares(...)``."""

    class Draw:
        pass

    Draw.squares = staticmethod(squares)  # type: ignore[attr-defined]
    Draw.aligned = staticmethod(aligned)  # type: ignore[attr-defined]
    return Draw


@pytest.fixture
def unpaired(tmp_path: Path) -> tuple[Path, Path]:
    """Six coloured squares (A) and their colour-inverted versions (B)."""
    return squares(tmp_path / "A", 6), squares(tmp_path / "B", 6, inverted=True)


@pytest.fixture
def tiny(tmp_path: Path, unpaired: tuple[Path, Path]) -> Callable[..., TrainOptions]:
    """``tiny(out_name, **overrides)``: a seconds-long CycleGAN config (16 px, ngf 4, one block, 6 images:
    6 iterations an epoch, 2 + 1 epochs); overrides are field names of any of the option groups."""

    def make(out: str = "run", **overrides: Any) -> TrainOptions:
        a, b = unpaired
        opts = TrainOptions(
            data=DataOptions(data_a=a, data_b=b, load_size=20, crop_size=16),
            model=ModelOptions(ngf=4, n_blocks=1, ndf=4, n_layers_d=2, pool_size=3),
            optim=OptimOptions(epochs=2, epochs_decay=1),
            run=quiet_run(tmp_path / out, samples=2),
        )
        return override(opts, **overrides)

    return make


@pytest.fixture
def tiny_pix2pix(tmp_path: Path) -> Callable[..., TrainOptions]:
    """``tiny_pix2pix(out_name, **overrides)``: pix2pix on 3 aligned 64 px pairs (U-Net of 6 levels, ngf 4,
    batch norm, and dropout in its one middle level: the official U-Net has dropout in all but its outer 5;
    3 iterations an epoch, 1 epoch)."""
    data = aligned(tmp_path / "aligned", 3, size=64)

    def make(out: str = "run", **overrides: Any) -> TrainOptions:
        opts = TrainOptions(
            data=DataOptions(data=data, load_size=72, crop_size=64, name_a="labels", name_b="photos"),
            model=ModelOptions(model="pix2pix", ngf=4, ndf=4, n_layers_d=2),
            optim=OptimOptions(epochs=1, epochs_decay=0),
            run=quiet_run(tmp_path / out),
        )
        return override(opts, **overrides)

    return make


@pytest.fixture
def tiny_dcgan(tmp_path: Path) -> Callable[..., TrainOptions]:
    """``tiny_dcgan(out_name, **overrides)``: DCGAN on 8 images of 16 px (nz 8, batch 4: 2 iterations an epoch)."""
    data = squares(tmp_path / "faces", 8, size=20)

    def make(out: str = "run", **overrides: Any) -> TrainOptions:
        opts = TrainOptions(
            data=DataOptions(data=data, crop_size=16),
            model=ModelOptions(model="dcgan", ngf=4, ndf=4, nz=8),
            optim=OptimOptions(epochs=1, batch_size=4),
            run=quiet_run(tmp_path / out),
        )
        return override(opts, **overrides)

    return make


@pytest.fixture
def tiny_flags(unpaired: tuple[Path, Path]) -> Callable[[Path], list[str]]:
    """``tiny_flags(out)``: the command-line flags of a tiny one-epoch CycleGAN run on ``unpaired``
    (what ``cyclestream train`` and ``python -m cyclestream.trainer`` take)."""

    def flags(out: Path) -> list[str]:
        a, b = unpaired
        return ["--data-a", str(a), "--data-b", str(b), "--out", str(out), "--ngf", "4", "--n-blocks", "1",
                "--ndf", "4", "--n-layers-d", "2", "--load-size", "20", "--crop-size", "16", "--epochs", "1",
                "--epochs-decay", "0", "--threads", "1", "--device", "cpu"]

    return flags
