"""PSNR/SSIM and `cyclestream evaluate` on a small synthetic paired test split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.errors import CycleStreamError
from cyclestream.trainer import evaluate as evaluate_mod
from cyclestream.trainer.evaluate import (
    PSNR_CAP,
    EvaluateOptions,
    evaluate,
    find_pairs,
    format_report,
    gaussian_window,
    mean_target_image,
    psnr,
    ssim,
)

SIZE = 32


def smooth_image(seed: int, size: int = SIZE) -> np.ndarray:
    """A picture with structure (blurred blobs), so SSIM has something to measure."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def paired(tmp_path: Path) -> Path:
    """testA/testB with 5 same-named pairs (B = a recoloured A) and one unpaired file in each."""
    root = tmp_path / "data"
    for split in ("testA", "testB"):
        (root / split).mkdir(parents=True)
    for i in range(5):
        a = smooth_image(i)
        Image.fromarray(a).save(root / "testA" / f"e{i}.png")
        Image.fromarray(255 - a).save(root / "testB" / f"e{i}.png")
    Image.fromarray(smooth_image(9)).save(root / "testA" / "only_a.png")
    Image.fromarray(smooth_image(9)).save(root / "testB" / "only_b.png")
    (root / "dataset.json").write_text(json.dumps({"domains": {"A": "twemoji", "B": "noto"}}))
    return root


class IdentityBackend:
    """Stands in for a prepared backend whose model returns its input unchanged."""

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.clone()

    def describe(self) -> str:
        return "identity"

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- metrics


def test_identical_images_score_perfectly() -> None:
    x = smooth_image(0)
    assert ssim(x, x) == 1.0
    assert psnr(x, x) == PSNR_CAP


def test_psnr_known_values() -> None:
    x = np.zeros((8, 8, 3), np.uint8)
    assert psnr(x, x + 1) == pytest.approx(10 * math.log10(255**2))  # MSE 1: 48.13 dB
    assert psnr(x, x + 255) == pytest.approx(0.0)


def test_ssim_of_flat_images_matches_the_formula() -> None:
    a, b = np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 150, np.uint8)
    c1 = (0.01 * 255) ** 2  # no variance: SSIM reduces to its luminance term
    assert ssim(a, b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))


def test_scores_fall_as_noise_grows() -> None:
    x = smooth_image(1)
    light, heavy = noisy(x, 8), noisy(x, 40)
    assert 1.0 > ssim(x, light) > ssim(x, heavy) > 0
    assert PSNR_CAP > psnr(x, light) > psnr(x, heavy)
    assert ssim(x, light) == pytest.approx(ssim(light, x))  # symmetric


def test_gaussian_window() -> None:
    w = gaussian_window(11, 1.5)
    assert w.shape == (11, 11) and float(w.sum()) == pytest.approx(1.0)
    assert torch.equal(w, w.T) and w[5, 5] == w.max()


def test_ssim_equals_the_direct_two_dimensional_definition() -> None:
    x, y = smooth_image(3), noisy(smooth_image(3), 20)
    tx, ty = (torch.from_numpy(v.copy()).double().permute(2, 0, 1).unsqueeze(0) for v in (x, y))
    w = gaussian_window(11, 1.5).expand(3, 1, 11, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, w, groups=3)

    mx, my = blur(tx), blur(ty)
    vx, vy, cov = blur(tx * tx) - mx**2, blur(ty * ty) - my**2, blur(tx * ty) - mx * my
    c1, c2 = 2.55**2, 7.65**2
    expected = ((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    assert ssim(x, y) == pytest.approx(float(expected), abs=1e-12)


def test_small_images_shrink_the_window() -> None:
    x = smooth_image(2, size=8)[:6, :7]
    assert ssim(x, x) == 1.0 and ssim(x, noisy(x, 30)) < 1.0


# ----------------------------------------------------------------------------- evaluation


def test_find_pairs_matches_names(paired: Path) -> None:
    pairs = find_pairs(paired)
    assert [name for name, _, _ in pairs] == [f"e{i}" for i in range(5)]
    assert all(a.parent.name == "testA" and b.parent.name == "testB" for _, a, b in pairs)
    reverse = find_pairs(paired, "BtoA", limit=2)
    assert [(a.parent.name, b.parent.name) for _, a, b in reverse] == [("testB", "testA")] * 2


def test_identity_model_scores_equal_the_baseline(paired: Path, tiny_model: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate_mod, "prepare_backend", lambda *args, **kw: IdentityBackend())
    report = evaluate(tiny_model, paired, EvaluateOptions(progress=False))
    assert report.pairs == 5
    assert report.translated == report.identity
    a, b = np.asarray(Image.open(paired / "testA" / "e0.png")), np.asarray(Image.open(paired / "testB" / "e0.png"))
    assert report.identity.ssim < 1 and psnr(a, b) < 20  # the baseline is a real comparison


def test_real_model_end_to_end(paired: Path, tiny_model: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.png"
    report = evaluate(tiny_model, paired, EvaluateOptions(grid=grid, grid_examples=3, limit=4, progress=False))
    assert report.pairs == 4 and report.size == (SIZE, SIZE) and report.domains == {"A": "twemoji", "B": "noto"}
    assert report.translated != report.identity  # a random generator does not return its input
    assert 0 < report.translated.psnr < PSNR_CAP and -1 <= report.translated.ssim <= 1
    with Image.open(grid) as im:  # three rows (input, translated, target) of three examples
        assert im.height == 3 * (SIZE + 4) + 4 and im.width > 3 * SIZE
        cells = np.asarray(im)
    row_top = [4 + r * (SIZE + 4) for r in range(3)]
    right = im.width - 4 - SIZE  # the last example's column
    first_input = np.asarray(Image.open(paired / "testA" / "e3.png"))
    assert np.array_equal(cells[row_top[0] : row_top[0] + SIZE, right : right + SIZE], first_input)
    text = format_report(report)
    assert "identity (input)" in text and "translated" in text and "twemoji → noto" in text
    assert report.mean_target is None and "mean target" not in text  # no trainB folder
    json.dumps(report.to_dict(), allow_nan=False)


def test_mean_training_target_is_a_second_baseline(paired: Path, tiny_model: Path) -> None:
    (paired / "trainB").mkdir()
    constant = np.full((SIZE, SIZE, 3), 40, np.uint8)
    for i, value in enumerate((20, 60)):  # mean 40 everywhere
        Image.fromarray(np.full((SIZE, SIZE, 3), value, np.uint8)).save(paired / "trainB" / f"t{i}.png")
    assert np.array_equal(mean_target_image(paired, "AtoB", (SIZE, SIZE)), constant)
    report = evaluate(tiny_model, paired, EvaluateOptions(progress=False))
    targets = [np.asarray(Image.open(paired / "testB" / f"e{i}.png")) for i in range(5)]
    assert report.mean_target is not None
    assert report.mean_target.psnr == pytest.approx(np.mean([psnr(constant, y) for y in targets]), abs=1e-6)
    assert "mean target image" in format_report(report) and report.to_dict()["mean_target"]["psnr"] > 0


def test_batched_run_gives_the_same_scores(paired: Path, tiny_model: Path) -> None:
    one = evaluate(tiny_model, paired, EvaluateOptions(progress=False))
    from cyclestream.engine.backends.options import RunOptions

    batched = evaluate(tiny_model, paired, EvaluateOptions(run=RunOptions(batch_size=2), progress=False))
    assert batched.translated.psnr == pytest.approx(one.translated.psnr, abs=1e-3)
    assert batched.translated.ssim == pytest.approx(one.translated.ssim, abs=1e-4)


@pytest.mark.parametrize("layout", ["missing", "no_testB", "no_pairs"])
def test_bad_data_folder(layout: str, tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "data"
    if layout != "missing":
        (root / "testA").mkdir(parents=True)
        Image.fromarray(smooth_image(0)).save(root / "testA" / "x.png")
    if layout == "no_pairs":
        (root / "testB").mkdir()
        Image.fromarray(smooth_image(0)).save(root / "testB" / "y.png")
    with pytest.raises(CycleStreamError, match={"missing": "not found", "no_testB": "testB",
                                                "no_pairs": "counterpart"}[layout]):
        evaluate(tiny_model, root, EvaluateOptions(progress=False))


def test_cli_evaluate(paired: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "g.png"
    assert main(["-q", "evaluate", str(tiny_model), "--data", str(paired), "--out", str(grid), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "PSNR (dB)" in out and "identity (input)" in out and grid.exists()
    assert main(["evaluate", str(tiny_model), "--data", str(paired), "--json", "--no-grid"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"] == 5 and result["grid"] is None
    assert set(result["identity"]) == {"psnr", "ssim"} and result["identity"] != result["translated"]
    assert main(["evaluate", str(tiny_model), "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cyclestream: error: dataset folder not found") and err.count("\n") == 1
