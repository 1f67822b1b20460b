"""HEIC/HEIF and AVIF photos are images, not videos.  AVIF is read and written by Pillow; HEIC/HEIF needs
pillow-heif, and without it a HEIC input or output gets one line naming the fix.  The inputs are made by
libheif's ``heif-enc`` (AVIF with ``--avif -p chroma=420``: its 4:4:4 default aborted on an assertion)
from a PNG of known pixels.  (PyAV's FFmpeg is not used for HEIC: it returned a single-image HEIC at its
coded 64×64, not the 64×48 the file displays, and an iPhone's tile grid as separate streams.)"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from cyclestream.cli import main
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import MediaError
from cyclestream.engine.jobs.translate import TranslateOptions, translate

QUIET = TranslateOptions(temporal="off", progress=False)
WIDTH, HEIGHT = 64, 48
needs_heif_enc = pytest.mark.skipif(
    not shutil.which("heif-enc"), reason="needs libheif's heif-enc (libheif-examples, tests/system_packages.sh)"
)
no_pillow_heif = pytest.mark.skipif(
    importlib.util.find_spec("pillow_heif") is not None, reason="pillow-heif is installed: HEIC is read"
)


def _png(path: Path) -> Path:
    """A smooth picture (lossy codecs keep it close) of WIDTH × HEIGHT."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    pixels = np.dstack([x * 4, y * 5, (x + y) * 2]).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def heif_enc(path: Path, *args: str) -> Path:
    png = _png(path.with_name(f"{path.stem}.source.png"))
    subprocess.run(["heif-enc", "-q", "90", *args, str(png), "-o", str(path)], check=True, capture_output=True)
    png.unlink()
    return path


def _model_on(pixels: np.ndarray, tiny_model: Path) -> np.ndarray:
    backend = prepare_backend(load_model(tiny_model), RunOptions(), pixels.shape[0], pixels.shape[1])
    return backend.run(torch.from_numpy(pixels[None].copy()))[0].numpy()


@needs_heif_enc
def test_an_avif_photo_is_translated_as_an_image_to_png_and_avif(tiny_model: Path, tmp_path: Path) -> None:
    src = heif_enc(tmp_path / "photo.avif", "--avif", "-p", "chroma=420")
    with Image.open(src) as image:  # the decoded input, straight from Pillow's AVIF decoder
        expected = _model_on(np.asarray(image.convert("RGB")), tiny_model)
    report = translate(src, tmp_path / "out.png", tiny_model, QUIET)
    assert report.frames == 1
    with Image.open(tmp_path / "out.png") as png:
        assert png.size == (WIDTH, HEIGHT)
        assert np.array_equal(np.asarray(png.convert("RGB")), expected)
    translate(src, tmp_path / "out.avif", tiny_model, QUIET)
    with Image.open(tmp_path / "out.avif") as avif:
        assert avif.format == "AVIF" and avif.size == (WIDTH, HEIGHT)
        error = np.abs(np.asarray(avif.convert("RGB")).astype(int) - expected.astype(int))
    assert error.mean() < 4 and np.percentile(error, 99) < 24  # lossy: quality 95, 4:4:4


@needs_heif_enc
def test_a_folder_holding_an_avif_translates_it_as_an_image(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    heif_enc(tmp_path / "in" / "sub" / "photo.avif", "--avif", "-p", "chroma=420")
    _png(tmp_path / "in" / "plain.png")
    report = translate(tmp_path / "in", tmp_path / "out", tiny_model, QUIET)
    assert report.frames == 2
    with Image.open(tmp_path / "out" / "sub" / "photo.avif") as out:
        assert out.format == "AVIF" and out.size == (WIDTH, HEIGHT)


@needs_heif_enc
@no_pillow_heif
def test_a_heic_photo_without_pillow_heif_gives_one_line_naming_the_fix(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = heif_enc(tmp_path / "IMG_0001.heic")
    assert main(["-q", "translate", str(src), str(tmp_path / "o.png"), "--model", str(tiny_model)]) != 0
    err = capsys.readouterr().err
    hint = "reading it needs pillow-heif: pip install 'cyclestream[heif]'"
    assert err == f"cyclestream: error: {src} is a HEIC/HEIF photo: {hint}\n"
    assert not (tmp_path / "o.png").exists()


@no_pillow_heif
def test_a_heic_output_without_pillow_heif_names_the_fix(tiny_model: Path, tmp_path: Path) -> None:
    src = _png(tmp_path / "in.png")
    with pytest.raises(MediaError, match=r"out\.heic: writing HEIC/HEIF needs pillow-heif: .*cyclestream\[heif\]"):
        translate(src, tmp_path / "out.heic", tiny_model, QUIET)
    assert not (tmp_path / "out.heic").exists()


def test_an_avif_output_keeps_transparency_icc_and_exif(tiny_model: Path, tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    rgba = np.dstack([np.asarray(Image.open(_png(tmp_path / "rgb.png"))), np.full((HEIGHT, WIDTH), 255, np.uint8)])
    rgba[:, : WIDTH // 2, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png", icc_profile=icc, exif=exif.tobytes())
    report = translate(tmp_path / "in.png", tmp_path / "out.avif", tiny_model, QUIET)
    assert report.warnings == []
    with Image.open(tmp_path / "out.avif") as out:
        assert out.mode == "RGBA" and out.info.get("icc_profile") == icc and out.getexif()[0x010F] == "Maker"
        alpha = np.asarray(out.getchannel("A")).astype(int)
    assert np.abs(alpha - rgba[..., 3]).max() <= 8
