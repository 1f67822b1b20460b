"""The fast paths keep the recipe: 200 iterations of bf16 training on the emoji data follow the exact
eager fp32 curves from the same seed as closely as two exact runs from different seeds follow each other.

The tolerance is derived, not chosen: for each loss term, the largest gap between the smoothed curves
(means over 20-iteration windows) of eager fp32 with seed 0 and with seed 1 is what the seed alone
moves a curve; a fast mode from seed 0 must stay within it.  A broken objective (the cycle weight 1
instead of 10) leaves it, so the comparison can tell a changed recipe from rounding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cyclestream.trainer.datasets.emoji import EmojiDatasetOptions, build_emoji_dataset
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainOptions
from cyclestream.trainer.speed import has_bf16
from tests.trainer.helpers import logged_losses, override, quiet_run
from tests.trainer.test_emoji_data import style_or_skip

ITERATIONS, WINDOW = 200, 20
TERMS = ("G_A", "G_B", "D_A", "D_B", "cycle_A", "cycle_B")


@pytest.fixture(scope="module")
def emoji(tmp_path_factory: pytest.TempPathFactory) -> Path:
    style_or_skip("twemoji"), style_or_skip("noto")
    out = tmp_path_factory.mktemp("emoji") / "twemoji2noto"
    build_emoji_dataset(out, EmojiDatasetOptions(source="twemoji", target="noto", size=32, test_fraction=0.25,
                                                 seed=0, limit=16, progress=False))
    return out


def curves(emoji: Path, out: Path, **overrides: Any) -> dict[str, np.ndarray]:
    options = TrainOptions(
        data=DataOptions(dataroot=emoji, load_size=32, crop_size=32),
        model=ModelOptions(ngf=4, n_blocks=1, ndf=4, n_layers_d=2),
        optim=OptimOptions(epochs=100, epochs_decay=0),
        run=quiet_run(out, max_iters=ITERATIONS, samples=0),
    )
    train(override(options, **{"precision": "fp32", "compile": "off", "channels_last": "off", **overrides}))
    log = logged_losses(out)[:ITERATIONS]
    assert len(log) == ITERATIONS
    terms = [t for t in TERMS if t in log[0]]
    assert len(terms) >= 4, f"logged terms: {sorted(log[0])}"
    return {t: np.array([e[t] for e in log]).reshape(-1, WINDOW).mean(axis=1) for t in terms}


def gaps(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {t: float(np.abs(a[t] - b[t]).max()) for t in a}


@pytest.mark.skipif(not has_bf16(__import__("torch").device("cpu")), reason="this CPU has no AVX-512-BF16 or AMX")
def test_bf16_follows_the_exact_curves_within_the_seed_spread(emoji: Path, tmp_path: Path) -> None:
    exact = curves(emoji, tmp_path / "fp32-seed0", seed=0)
    tolerance = gaps(exact, curves(emoji, tmp_path / "fp32-seed1", seed=1))
    fast = gaps(exact, curves(emoji, tmp_path / "bf16-seed0", seed=0, precision="bf16"))
    assert all(fast[t] <= tolerance[t] for t in fast), f"bf16 gaps {fast} beyond the seed spread {tolerance}"
    broken = gaps(exact, curves(emoji, tmp_path / "broken", seed=0, precision="bf16", lambda_a=1.0, lambda_b=1.0))
    assert any(broken[t] > tolerance[t] for t in broken), f"a changed recipe within the spread: {broken}"
