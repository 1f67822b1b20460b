"""Image folders, datasets and the resumable sampler.

Every random choice about a sample (its crop, its flip, the unpaired B image) comes from a
generator seeded with ``(seed, epoch, index)``, and the order of an epoch from ``(seed, epoch)``
(DistributedSampler's rule).  So the data a run sees is a pure function of the seed: a run resumed
mid-epoch skips the batches already done and sees exactly what an uninterrupted run would, with
any number of loader workers.  Pixels come from :func:`cyclestream.engine.media.images.load_rgb`
(alpha composited onto white, grayscale made RGB) so training and inference see the same images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, DistributedSampler

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.images import load_rgb
from cyclestream.trainer.options import TrainingError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})

# A dataset key: (index, epoch, seed), as the sampler yields it.
SampleKey = tuple[int, int, int]


class DataError(TrainingError):
    """A data folder that cannot be trained on (missing, empty, unreadable files)."""


def scan_images(folder: Path, what: str = "data") -> list[Path]:
    """The image files under ``folder`` (recursively, sorted, hidden files skipped), each checked
    to open as an image; a DataError names the folder or the file at fault."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{what} folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"{what} path is not a folder: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        others = f" (it holds {len(files)} other files)" if files else " (it is empty)"
        raise DataError(f"no images in {what} folder {folder}{others}; expected "
                        f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))}")
    for path in images:
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"{path} is not a readable image ({e}); remove it from the {what} folder") from None
        if width < 1 or height < 1:
            raise DataError(f"{path} is an empty image; remove it from the {what} folder")
    return images


@dataclass(frozen=True)
class Crop:
    """Where one sample is cut from its resized image, and whether it is mirrored."""

    x: int
    y: int
    flip: bool

    @classmethod
    def random(cls, rng: np.random.Generator, load: int, crop: int, flip: bool) -> Crop:
        return cls(int(rng.integers(0, load - crop + 1)), int(rng.integers(0, load - crop + 1)),
                   bool(flip and rng.random() < 0.5))

    @classmethod
    def center(cls, load: int, crop: int) -> Crop:
        return cls((load - crop) // 2, (load - crop) // 2, False)

    def apply(self, image: np.ndarray, size: int) -> np.ndarray:
        out = image[self.y : self.y + size, self.x : self.x + size]
        return out[:, ::-1] if self.flip else out


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) → float (3, H, W) in [-1, 1], as engine/backends/tensors.py feeds the model."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def _load(path: Path, size: int | None = None) -> np.ndarray:
    try:
        return load_rgb(path, None if size is None else (size, size))
    except MediaError as e:
        raise DataError(f"{e}; remove it from the data folder") from None


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


class _Folder(Dataset):
    """Shared: resize to load_size², crop crop_size², maybe flip."""

    def __init__(self, load_size: int, crop_size: int, flip: bool) -> None:
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip

    def _rng(self, key: SampleKey) -> np.random.Generator:
        index, epoch, seed = key
        return np.random.default_rng([seed & 0xFFFFFFFF, epoch, index, 0xC5C1E])

    def _crop(self, rng: np.random.Generator | None) -> Crop:
        if rng is None:
            return Crop.center(self.load_size, self.crop_size)
        return Crop.random(rng, self.load_size, self.crop_size, self.flip)

    def _sample(self, path: Path, rng: np.random.Generator | None) -> torch.Tensor:
        image = _load(path, self.load_size)
        return to_tensor(self._crop(rng).apply(image, self.crop_size))


class UnalignedDataset(_Folder):
    """CycleGAN's unpaired A and B folders: A in order, B drawn at random (the official rule).
    An epoch has max(|A|, |B|) samples."""

    def __init__(self, a: list[Path], b: list[Path], load_size: int, crop_size: int, flip: bool) -> None:
        super().__init__(load_size, crop_size, flip)
        self.a, self.b = a, b

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        rng = self._rng(key)
        index_b = int(rng.integers(0, len(self.b)))
        return {"A": self._sample(self.a[key[0] % len(self.a)], rng), "B": self._sample(self.b[index_b], rng)}

    def fixed(self, i: int) -> dict[str, torch.Tensor]:
        """A deterministic sample (centre crop, no flip) for the sample grids."""
        return {"A": self._sample(self.a[i % len(self.a)], None), "B": self._sample(self.b[i % len(self.b)], None)}


class AlignedDataset(_Folder):
    """pix2pix's aligned images: A on the left half, B on the right, the same crop and flip for both."""

    def __init__(self, files: list[Path], load_size: int, crop_size: int, flip: bool, direction: str) -> None:
        super().__init__(load_size, crop_size, flip)
        self.files, self.swap = files, direction == "BtoA"

    def __len__(self) -> int:
        return len(self.files)

    def _pair(self, path: Path, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        ab = _load(path)
        half = ab.shape[1] // 2
        if half < 1:
            raise DataError(f"{path} is {ab.shape[1]} pixels wide; an aligned image holds A and B side by side")
        a, b = _resize(ab[:, :half], self.load_size), _resize(ab[:, half : 2 * half], self.load_size)
        crop = self._crop(rng)
        a_t, b_t = to_tensor(crop.apply(a, self.crop_size)), to_tensor(crop.apply(b, self.crop_size))
        return {"A": b_t, "B": a_t} if self.swap else {"A": a_t, "B": b_t}

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        return self._pair(self.files[key[0]], self._rng(key))

    def fixed(self, i: int) -> dict[str, torch.Tensor]:
        return self._pair(self.files[i % len(self.files)], None)


class SingleDataset(_Folder):
    """DCGAN's one folder of images."""

    def __init__(self, files: list[Path], load_size: int, crop_size: int, flip: bool) -> None:
        super().__init__(load_size, crop_size, flip)
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        return {"image": self._sample(self.files[key[0]], self._rng(key))}

    def fixed(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self._sample(self.files[i % len(self.files)], None)}


class ResumableSampler(DistributedSampler):
    """DistributedSampler (same shuffling and sharding, also with one process) that yields
    ``(index, epoch, seed)`` keys and can start part-way into an epoch (``set_start``)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def set_start(self, samples_done: int) -> None:
        """Skip the first ``samples_done`` samples of this rank's share of the epoch."""
        self.start = max(0, min(samples_done, self.num_samples))

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        indices = list(super().__iter__())[self.start :]
        return iter([(int(i), self.epoch, self.seed) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


def unaligned_folders(data_a: Path | None, data_b: Path | None, dataroot: Path | None) -> tuple[Path, Path]:
    """The A and B folders from --data-a/--data-b or --dataroot (trainA, trainB)."""
    if data_a is not None and data_b is not None:
        return Path(data_a), Path(data_b)
    if dataroot is None:
        raise DataError("cyclegan needs --data-a DIR --data-b DIR (or --dataroot with trainA/trainB)")
    root = Path(dataroot)
    if not root.is_dir():
        raise DataError(f"dataroot folder not found: {root}")
    a, b = root / "trainA", root / "trainB"
    missing = [p.name for p in (a, b) if not p.is_dir()]
    if missing:
        raise DataError(f"{root} has no {' or '.join(missing)} folder (--dataroot expects trainA/ and trainB/)")
    return a, b
