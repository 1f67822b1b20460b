"""Still and animated images in and out (Pillow), keeping what the model does not change.

Reading gives upright RGB uint8 frames: the EXIF orientation is applied; 16-bit and float pixels are
scaled to 8 bits, not clipped; palette, greyscale and CMYK become RGB (CMYK and grey through their ICC
profile when they have one); transparent pixels are composited onto white for the model, and the alpha
channel is kept aside.  Writing puts back the alpha channel, the ICC profile, the EXIF (without its
orientation: the pixels are upright now), XMP and a PNG's gAMA and cHRM, and for animations every frame
with its duration and the loop count, in the formats that can hold them; :attr:`Picture.lost` and the
list :func:`write_picture` returns name in one line each what could not be kept.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, ImageSequence, PngImagePlugin, UnidentifiedImageError

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.probe import HEIF_SUFFIXES, is_image

try:  # HEIC/HEIF through pillow-heif (the `heif` extra) when it is installed; AVIF is Pillow's own
    from pillow_heif import register_heif_opener
except ImportError:
    HEIF_OPENER = False
else:
    register_heif_opener()
    HEIF_OPENER = True
HEIF_HINT = "needs pillow-heif: pip install 'cyclestream[heif]'"

ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP"})  # Pillow writes these with save_all, durations and loop
ALPHA_FORMATS = frozenset({"GIF", "PNG", "WEBP", "TIFF", "AVIF"})  # formats that keep transparency (GIF: on or off)
METADATA: dict[str, frozenset[str]] = {  # what Pillow's writer for each format keeps (checked in the tests)
    "JPEG": frozenset({"icc_profile", "exif", "xmp"}),
    "WEBP": frozenset({"icc_profile", "exif", "xmp"}),
    "PNG": frozenset({"icc_profile", "exif", "xmp", "gamma", "chromaticity", "srgb"}),
    "TIFF": frozenset({"icc_profile", "exif"}),
    "AVIF": frozenset({"icc_profile", "exif", "xmp"}),
}
METADATA_NAMES = {"icc_profile": "ICC profile", "exif": "EXIF", "xmp": "XMP", "gamma": "gAMA", "chromaticity": "cHRM",
                  "srgb": "sRGB"}
# A PNG's gAMA, cHRM and sRGB, which Pillow reads into info (floats as value / 100000; sRGB's rendering
# intent as an int) and does not write back from info: kept as their chunk data (big-endian uint32 × 100000;
# one byte) and written as raw chunks.  Key → (chunk type, numbers in it; 0: the one-byte intent).
PNG_CHUNKS = {"gamma": (b"gAMA", 1), "chromaticity": (b"cHRM", 8), "srgb": (b"sRGB", 0)}
SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 95},
    "WEBP": {"quality": 95},
    "AVIF": {"quality": 95, "subsampling": "4:4:4"},  # 4:2:0 lost a third of a model output's colour detail
}
_SRGB = ImageCms.createProfile("sRGB")
DAMAGED = (IndexError, TypeError, SyntaxError, EOFError)  # what Pillow's decoders also raise for damaged files


@dataclass
class Picture:
    """An image file's frames (one for a still) as (H, W, 3) uint8 RGB, and what goes back into the output."""

    frames: list[np.ndarray]
    durations: list[float] = field(default_factory=list)  # milliseconds per frame; empty for a still
    loop: int | None = None  # animations: 0 = forever, None = play once (GIF without a loop block)
    # icc_profile, exif (orientation removed), xmp; a PNG's gamma and chromaticity as gAMA/cHRM chunk data
    metadata: dict[str, bytes] = field(default_factory=dict)
    alphas: list[np.ndarray] = field(default_factory=list)  # (H, W) uint8 per frame when it has transparency
    lost: list[str] = field(default_factory=list)  # what reading could not keep, one line each

    @property
    def animated(self) -> bool:
        return len(self.frames) > 1

    def with_frames(self, frames: list[np.ndarray]) -> Picture:
        return dataclasses.replace(self, frames=frames)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit ("I;16*") and 32-bit ("I", "F") greyscale as "L", scaled: 0..65535 → 0..255.  "I" and "F" say
    nothing about their range, so it is read from the values: floats up to 1.0, integers up to 255 or up to
    65535, else the image's own maximum."""
    values = np.asarray(image).astype(np.float64)
    top = float(values.max(initial=0.0))
    if image.mode.startswith("I;16"):
        full = 65535.0
    elif image.mode == "F" and top <= 1.0:
        full = 1.0
    else:
        full = next((limit for limit in (255.0, 65535.0) if top <= limit), top)
    return Image.fromarray(np.clip(np.rint(values * (255.0 / full)), 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB, with any transparency composited onto ``background`` (emoji are drawn on alpha); high bit depths
    are scaled to 8 bits (see :func:`_to_8bit`)."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    if has_alpha(image):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info


def _colour_space(icc: bytes) -> str:
    try:
        return str(ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.xcolor_space).strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return "unreadable"


def _colour_managed(image: Image.Image, lost: list[str]) -> Image.Image:
    """An image whose ICC profile is not an RGB one (CMYK, grey) → sRGB through that profile, since the
    profile cannot go with RGB pixels; images with an RGB profile or none are returned as they are."""
    icc = image.info.get("icc_profile")
    if not icc:
        if image.mode == "CMYK":
            lost.append("CMYK converted to RGB without a colour profile")
        return image
    space = _colour_space(icc)
    if space == "RGB":
        return image
    # gAMA/cHRM/sRGB go too: they describe the encoding the pixels no longer have (an iCCP overrides them)
    info = {key: value for key, value in image.info.items() if key not in ("icc_profile", *PNG_CHUNKS)}
    try:
        converted = ImageCms.profileToProfile(image, io.BytesIO(icc), _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        converted = None
    if converted is None:
        lost.append(f"{space} colour profile could not be applied (pixels converted to RGB without it)")
        converted = image.copy()
    elif image.mode == "CMYK":
        lost.append("CMYK converted to sRGB through its colour profile")
    converted.info = info
    return converted


def _png_chunk(value: object, count: int) -> bytes | None:
    """gAMA/cHRM chunk data from Pillow's floats (sRGB's, ``count`` 0, from its intent), or None for a value
    that is not ``count`` numbers (not an intent, 0 to 3)."""
    if count == 0:
        return bytes([value]) if isinstance(value, int) and 0 <= value <= 3 else None
    values = value if isinstance(value, tuple) else (value,)
    if len(values) != count or not all(isinstance(v, (int, float)) and 0 <= v * 100000 < 2**32 for v in values):
        return None
    return struct.pack(f">{count}I", *(round(v * 100000) for v in values))


def _metadata(image: Image.Image, fmt: str | None) -> dict[str, bytes]:
    found = {
        "icc_profile": image.info.get("icc_profile"),
        "exif": image.info.get("exif"),  # not getexif(): for a TIFF that is its own layout tags
        "xmp": image.info.get("xmp") or image.info.get("XML:com.adobe.xmp"),
    }
    if fmt == "PNG":  # only a PNG's own chunks (Pillow's DDS reader also sets a "gamma" for sRGB formats)
        found |= {key: _png_chunk(image.info.get(key), count) for key, (_, count) in PNG_CHUNKS.items()}
    return {key: value.encode() if isinstance(value, str) else value for key, value in found.items() if value}


def _depth_lost(image: Image.Image) -> str | None:
    """What reading at 8 bits per channel loses, if anything; call it before the image is loaded (Pillow's
    PNG and TIFF readers bring 16-bit RGB in as 8-bit "RGB": only the raw mode of their tiles tells)."""
    if image.mode.startswith("I") or image.mode == "F":
        return f"{image.mode} pixels scaled to 8 bits per channel"
    rawmodes = [tile.args if isinstance(tile.args, str) else (tile.args or ("",))[0] for tile in image.tile]
    return "16-bit channels scaled to 8 bits" if any(";16" in str(mode) for mode in rawmodes) else None


def _frames(image: Image.Image) -> Iterator[Image.Image]:
    """The frames to translate: every frame of an animation, else the first picture alone."""
    if image.format in ANIMATED_FORMATS and getattr(image, "is_animated", False):
        yield from ImageSequence.Iterator(image)
    else:
        yield image


def _read(image: Image.Image, size: tuple[int, int] | None, all_frames: bool) -> Picture:
    depth = _depth_lost(image)
    picture = Picture(frames=[], lost=[depth] if depth else [])
    pictures = getattr(image, "n_frames", 1)
    transparent = False
    for frame in _frames(image) if all_frames else iter([image]):
        upright = ImageOps.exif_transpose(frame)
        if not picture.frames:
            transparent = has_alpha(upright)
            upright = _colour_managed(upright, picture.lost)
            picture.metadata = _metadata(upright, image.format)
        rgb = to_rgb(upright)  # the model sees transparent pixels on white; the alpha goes back unchanged
        alpha = upright.convert("RGBA").getchannel("A") if transparent else None
        if size is not None and rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
            alpha = alpha.resize(size, Image.Resampling.LANCZOS) if alpha is not None else None
        picture.frames.append(np.asarray(rgb))
        if alpha is not None:
            picture.alphas.append(np.asarray(alpha))
        if "duration" in frame.info and pictures > 1:
            picture.durations.append(frame.info["duration"])
    if picture.animated:
        picture.loop = image.info.get("loop")
    elif all_frames and pictures > 1:
        picture.lost.append(f"only the first of its {pictures} pictures ({image.format}) is translated")
    return picture


def read_picture(
    path: str | os.PathLike[str], size: tuple[int, int] | None = None, all_frames: bool = True
) -> Picture:
    """Every frame of an image file, upright and RGB (scaled to ``size`` = (width, height) if given), with its
    metadata; or a MediaError saying why it cannot be read."""
    if Path(path).suffix.lower() in HEIF_SUFFIXES and not HEIF_OPENER and Path(path).is_file():
        raise MediaError(f"{path} is a HEIC/HEIF photo: reading it {HEIF_HINT}")
    try:
        with Image.open(path) as image:
            return _read(image, size, all_frames)
    except FileNotFoundError:
        raise MediaError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, *DAMAGED) as e:
        raise MediaError(f"cannot read image {path}: {e or type(e).__name__}") from None


def load_rgb(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file's first frame, upright (scaled to ``size`` = (width, height) if
    given), or a MediaError saying why it cannot be read."""
    return read_picture(path, size, all_frames=False).frames[0]


def find_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    """The image files below ``folder`` by name, skipping hidden ones (``.name``: temporary files of
    unfinished writes, macOS ``._`` companions) and everything inside ``exclude`` (an output folder placed
    inside the input folder, so that a rerun does not translate its own outputs)."""
    skip = exclude.resolve() if exclude is not None else None
    return sorted(
        path
        for path in folder.rglob("*")
        if is_image(path)
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and not (skip is not None and path.resolve().is_relative_to(skip))
    )


def output_format(path: str | os.PathLike[str]) -> str:
    """The Pillow format that writes ``path`` (by its suffix), or a MediaError naming the path."""
    suffix = Path(path).suffix.lower()
    if suffix in HEIF_SUFFIXES and not HEIF_OPENER:
        raise MediaError(f"cannot write {path}: writing HEIC/HEIF {HEIF_HINT} (or write .avif, .jpg or .png)")
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise MediaError(
            f"cannot write an image as '{suffix}': {path} (use .png, .jpg, .webp, .avif, .tif, .gif or .bmp; "
            "an animation can also be written as .mp4, .mkv, .mov or .webm)"
        )
    return fmt


def check_writable(picture: Picture, path: str | os.PathLike[str]) -> str:
    """The format for ``path``, or a MediaError when it cannot hold the picture (an animation as JPEG)."""
    fmt = output_format(path)
    if picture.animated and fmt not in ANIMATED_FORMATS:
        raise MediaError(
            f"cannot write an animation ({len(picture.frames)} frames) as '{Path(path).suffix}': {path} "
            "(use .gif, .webp or .png)"
        )
    return fmt


def _images(picture: Picture, fmt: str) -> tuple[list[Image.Image], list[str]]:
    """The frames as Pillow images, with their transparency where ``fmt`` can hold it."""
    if not picture.alphas:
        return [Image.fromarray(frame) for frame in picture.frames], []
    if fmt not in ALPHA_FORMATS:
        return [Image.fromarray(frame) for frame in picture.frames], [
            f"transparency not kept ({fmt} cannot hold it; flattened onto white)"
        ]
    return [Image.fromarray(np.dstack([f, a])) for f, a in zip(picture.frames, picture.alphas, strict=True)], []


def _save_options(picture: Picture, fmt: str, images: list[Image.Image]) -> tuple[dict[str, object], list[str]]:
    options: dict[str, object] = dict(SAVE_OPTIONS.get(fmt, {}))
    kept = METADATA.get(fmt, frozenset())
    dropped = [METADATA_NAMES[key] for key in picture.metadata if key not in kept]
    pnginfo = PngImagePlugin.PngInfo()
    for key in kept & picture.metadata.keys():
        if fmt == "PNG" and key == "xmp":
            pnginfo.add_itxt("XML:com.adobe.xmp", picture.metadata[key].decode("utf-8", "replace"))
        elif fmt == "PNG" and key in PNG_CHUNKS:
            pnginfo.add(PNG_CHUNKS[key][0], picture.metadata[key])
        else:
            options[key] = picture.metadata[key]
    if pnginfo.chunks:
        options["pnginfo"] = pnginfo
    if picture.animated:
        options.update(save_all=True, append_images=images[1:])
        if len(picture.durations) == len(picture.frames):
            options["duration"] = picture.durations
        if picture.loop is not None:
            options["loop"] = picture.loop
        if picture.alphas and fmt == "GIF":
            options["disposal"] = 2  # clear each frame before the next, or its pixels show through transparency
        if picture.alphas and fmt == "WEBP":
            options.update(kmin=1, kmax=1)  # only key frames: with inter frames libwebp 1.6 dropped the alpha
    if not dropped:
        return options, []
    names = dropped[0] if len(dropped) == 1 else f"{', '.join(dropped[:-1])} and {dropped[-1]}"
    return options, [f"{names} not kept ({fmt} cannot hold {'them' if len(dropped) > 1 else 'it'})"]


def write_picture(picture: Picture, path: str | os.PathLike[str]) -> list[str]:
    """Write ``picture`` to ``path`` (format by suffix) through a temporary file; returns what the format could
    not keep, one line each."""
    target = Path(path)
    fmt = check_writable(picture, target)
    images, lost = _images(picture, fmt)
    options, not_held = _save_options(picture, fmt, images)
    try:
        with atomic_output(target) as tmp:
            images[0].save(tmp, format=fmt, **options)
    except (OSError, ValueError) as e:
        raise MediaError(f"cannot write image {target}: {e}") from None
    return lost + not_held


def save_rgb(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write one (H, W, 3) uint8 array as an image file (format by suffix)."""
    write_picture(Picture(frames=[image]), path)
    return Path(path)
