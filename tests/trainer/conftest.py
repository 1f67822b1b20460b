"""Fixtures for the trainer tests: tiny synthetic image folders and tiny training options."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, RunOptions, TrainOptions


def squares(folder: Path, count: int, size: int = 24, inverted: bool = False, seed: int = 0) -> Path:
    """``count`` PNGs: a solid coloured square on white (or the colour-inverted image)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(count):
        colour = tuple(rng.randrange(256) for _ in range(3))
        im = Image.new("RGB", (size, size), (255, 255, 255))
        lo = rng.randrange(1, size // 4)
        im.paste(colour, (lo, lo, size - lo, size - lo))
        if inverted:
            im = Image.eval(im, lambda v: 255 - v)
        im.save(folder / f"{i:03d}.png")
    return folder


def aligned(folder: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    """pix2pix-style A|B images: a square on the left, its inverted image on the right."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = squares(folder / ".src", count, size, seed=seed)
    for i, path in enumerate(sorted(tmp.glob("*.png"))):
        a = Image.open(path).convert("RGB")
        ab = Image.new("RGB", (2 * size, size))
        ab.paste(a, (0, 0))
        ab.paste(Image.eval(a, lambda v: 255 - v), (size, 0))
        ab.save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(autouse=True)
def _few_threads() -> Any:
    """Keep the CPU use of the trainer tests modest (another suite may be running)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def draw() -> Any:
    """The image writers above, for tests that need their own folders: ``draw.squares(...)``."""

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
    """``tiny(out_name, **overrides)``: a seconds-long CycleGAN config (16 px, ngf 4, one block);
    overrides are field names of any of the option groups."""

    def make(out: str = "run", **overrides: Any) -> TrainOptions:
        a, b = unpaired
        opts = TrainOptions(
            data=DataOptions(data_a=a, data_b=b, load_size=20, crop_size=16),
            model=ModelOptions(ngf=4, n_blocks=1, ndf=4, n_layers_d=2, pool_size=3),
            optim=OptimOptions(epochs=2, epochs_decay=1),
            run=RunOptions(out=tmp_path / out, progress=False, threads=1, samples=2),
        )
        groups = {"data": opts.data, "model": opts.model, "optim": opts.optim, "run": opts.run}
        for key, value in overrides.items():
            group = next(g for g, obj in groups.items() if hasattr(obj, key))
            groups[group] = replace(groups[group], **{key: value})
        return TrainOptions(**groups)

    return make
