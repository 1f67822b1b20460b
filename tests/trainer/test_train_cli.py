"""`cyclestream train`: flags reach the trainer; errors are one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model


def test_cli_trains_and_resumes(tmp_path: Path, tiny_flags: Callable[[Path], list[str]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    flags = ["-q", "train", *tiny_flags(out), "--name-a", "squares", "--name-b", "inverted", "--no-flip"]
    assert main([*flags, "--max-iters", "4"]) == 0
    assert "stopped (continue with --resume" in capsys.readouterr().out
    assert main([*flags, "--resume"]) == 0
    assert "finished at epoch 1, iteration 6" in capsys.readouterr().out
    model = load_model(out / "G_A.safetensors")
    assert model.metadata["direction"] == "squares -> inverted"
    assert model.metadata["training"]["data"]["flip"] is False


def test_cli_errors_are_one_line(tmp_path: Path, unpaired: tuple[Path, Path], tiny_flags: Callable[[Path], list[str]],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["-q", "train", *tiny_flags(tmp_path / "run"), "--data-b", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cyclestream: error: no images in domain B folder") and "\n" not in err
    assert main(["-q", "train", "--out", str(tmp_path / "x")]) == 2
    assert "cyclegan needs --data-a DIR --data-b DIR" in capsys.readouterr().err
    assert main(["-q", "train", *tiny_flags(tmp_path / "run"), "--nproc", "2", "--ddp-recipe", "official"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--ddp-recipe official splits --batch-size 1 across 2 processes" in err and "\n" not in err
    assert main(["-q", "train", *tiny_flags(tmp_path / "run"), "--device", "gpu"]) == 2
    assert "--device gpu: expected auto (cuda when torch sees a GPU, else cpu)" in capsys.readouterr().err
