"""Data folders: bad ones give one clear CycleStreamError; the sampler resumes mid-epoch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from cyclestream.engine.errors import CycleStreamError
from cyclestream.trainer.data import AlignedDataset, ResumableSampler, UnalignedDataset, scan_images
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import TrainOptions


def test_missing_and_empty_folders(tmp_path: Path, tiny: Callable[..., TrainOptions],
                                   unpaired: tuple[Path, Path]) -> None:
    with pytest.raises(CycleStreamError, match="domain A folder not found"):
        train(tiny(data_a=tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CycleStreamError, match=r"no images in domain B folder .*empty\)"):
        train(tiny(data_b=empty))
    (empty / "readme.txt").write_text("hello")
    (empty / ".hidden.png").write_bytes(b"")
    with pytest.raises(CycleStreamError, match=r"no images .*holds 1 other files"):
        train(tiny(data_b=empty))
    with pytest.raises(CycleStreamError, match="not a folder"):
        train(tiny(data_a=unpaired[0] / "000.png"))


def test_a_broken_image_is_named(tiny: Callable[..., TrainOptions], unpaired: tuple[Path, Path]) -> None:
    (unpaired[1] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    with pytest.raises(CycleStreamError, match=r"broken\.png is not a readable image.*remove it"):
        train(tiny())


def test_aligned_images_share_crop_and_flip(tmp_path: Path, draw: object) -> None:
    folder = draw.aligned(tmp_path / "ab", 3, size=32)  # type: ignore[attr-defined]
    ds = AlignedDataset(scan_images(folder), 36, 32, True, "AtoB")
    for seed in range(6):
        item = ds[(seed % 3, 0, seed)]
        # B is the colour-inverted A, so after the same crop and flip A + B == 0 (in [-1, 1]) up to resizing.
        assert (item["A"] + item["B"]).abs().mean() < 0.02
    plain = AlignedDataset(scan_images(folder), 32, 32, False, "AtoB")[(0, 0, 0)]
    swapped = AlignedDataset(scan_images(folder), 32, 32, False, "BtoA")[(0, 0, 0)]
    assert swapped["A"].equal(plain["B"]) and swapped["B"].equal(plain["A"])


def test_sampler_resumes_mid_epoch(unpaired: tuple[Path, Path]) -> None:
    ds = UnalignedDataset(scan_images(unpaired[0]), scan_images(unpaired[1]), 20, 16, True)
    sampler = ResumableSampler(ds, num_replicas=1, rank=0, seed=3)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_start(4)
    assert list(sampler) == whole[4:] and len(sampler) == 2
    sampler.set_epoch(3)
    sampler.set_start(0)
    assert [k[0] for k in sampler] != [k[0] for k in whole]  # a new order each epoch
    shards = [list(ResumableSampler(ds, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert sorted(k[0] for s in shards for k in s) == list(range(6))


def test_same_key_same_sample(unpaired: tuple[Path, Path]) -> None:
    ds = UnalignedDataset(scan_images(unpaired[0]), scan_images(unpaired[1]), 24, 16, True)
    first, again = ds[(2, 5, 9)], ds[(2, 5, 9)]
    assert all((first[k] == again[k]).all() for k in ("A", "B"))
    other = ds[(2, 6, 9)]
    assert not all((first[k] == other[k]).all() for k in ("A", "B"))


def test_tiny_images_are_upscaled(tmp_path: Path, tiny: Callable[..., TrainOptions]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        Image.new("RGB", (3, 5), (10, 20, 30)).save(folder / "x.bmp")
    assert train(tiny("tinyimgs", data_a=a, data_b=b, epochs=1, epochs_decay=0)).position.iteration == 1
