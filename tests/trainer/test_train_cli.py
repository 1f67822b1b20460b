"""`cyclestream train`: flags reach the trainer; errors are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model


def _flags(a: Path, b: Path, out: Path) -> list[str]:
    return ["-q", "train", "--data-a", str(a), "--data-b", str(b), "--out", str(out), "--ngf", "4", "--n-blocks", "1",
            "--ndf", "4", "--n-layers-d", "2", "--load-size", "20", "--crop-size", "16", "--epochs", "1",
            "--epochs-decay", "0", "--threads", "1", "--name-a", "squares", "--name-b", "inverted", "--no-flip"]


def test_cli_trains_and_resumes(
    tmp_path: Path, unpaired: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main([*_flags(*unpaired, out), "--max-iters", "4"]) == 0
    assert "stopped (continue with --resume" in capsys.readouterr().out
    assert main([*_flags(*unpaired, out), "--resume"]) == 0
    assert "finished at epoch 1, iteration 6" in capsys.readouterr().out
    model = load_model(out / "G_A.safetensors")
    assert model.metadata["direction"] == "squares -> inverted"
    assert model.metadata["training"]["data"]["flip"] is False


def test_cli_errors_are_one_line(
    tmp_path: Path, unpaired: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_flags(unpaired[0], empty, tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cyclestream: error: no images in domain B folder") and "\n" not in err
    assert main(["-q", "train", "--out", str(tmp_path / "x")]) == 2
    assert "cyclegan needs --data-a DIR --data-b DIR" in capsys.readouterr().err
