"""Still images in and out (Pillow): RGB uint8 arrays, alpha composited onto white."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.errors import MediaError


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB, with any transparency composited onto ``background`` (emoji are drawn on alpha)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def load_rgb(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (scaled to ``size`` = (width, height) if given),
    or a MediaError saying why it cannot be read."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb(im)
            if size is not None and rgb.size != size:
                rgb = rgb.resize(size, Image.Resampling.LANCZOS)
            return np.asarray(rgb)
    except FileNotFoundError:
        raise MediaError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MediaError(f"cannot read image {path}: {e}") from None


def save_rgb(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    with atomic_output(target) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions().get(target.suffix.lower(), "PNG"))
    return target
