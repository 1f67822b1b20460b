"""Images and folders of images through the same backend as video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import MediaError
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.images import load_rgb

QUIET = TranslateOptions(temporal="off", progress=False)


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.squeeze(-1) if channels == 1 else data, mode).save(path)
    return data


def test_single_image_keeps_its_odd_size_and_equals_the_backend(tiny_model: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "in.png", (37, 23))
    report = translate(tmp_path / "in.png", tmp_path / "out.png", tiny_model, QUIET)
    assert report.frames == 1
    out = load_rgb(tmp_path / "out.png")
    assert out.shape == (23, 37, 3)
    backend = prepare_backend(load_model(tiny_model), RunOptions(), 23, 37)
    expected = backend.run(torch.from_numpy(load_rgb(tmp_path / "in.png")[None].copy()))[0].numpy()
    assert np.array_equal(out, expected)


def test_transparent_pixels_become_white() -> None:
    from cyclestream.engine.media.images import to_rgb

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque
    rgb = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert rgb[0, 0].tolist() == [10, 20, 30]
    assert rgb[1, 1].tolist() == [255, 255, 255]


def test_folder_of_mixed_images_mirrors_into_output_folder(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_image(src / "a.png", (32, 32))
    write_image(src / "sub" / "b.jpg", (40, 24), seed=1)
    write_image(src / "c.png", (20, 16), "RGBA", seed=2)
    write_image(src / "d.png", (16, 16), "L", seed=3)
    (src / "notes.txt").write_text("not an image")
    report = translate(src, tmp_path / "out", tiny_model, QUIET)
    assert report.frames == 4
    for name, shape in [("a.png", (32, 32)), ("sub/b.jpg", (24, 40)), ("c.png", (16, 20)), ("d.png", (16, 16))]:
        assert load_rgb(tmp_path / "out" / name).shape == (*shape, 3)
    assert not (tmp_path / "out" / "notes.txt").exists()


def test_empty_folder_and_unreadable_image(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no images"):
        translate(tmp_path / "empty", tmp_path / "out", tiny_model, QUIET)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert (
        main(["-q", "translate", str(tmp_path / "broken.png"), str(tmp_path / "o.png"), "--model", str(tiny_model)])
        == 2
    )
    assert "cannot read image" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
