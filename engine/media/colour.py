"""Colour tags and the YUV ↔ RGB conversions at the PyAV boundary.

A video frame is YUV with four tags (FFmpeg's AVColorSpace, AVColorRange, AVColorPrimaries,
AVColorTransferCharacteristic).  The model sees RGB, so a frame is converted with *its* matrix and
range on the way in, and the translated RGB is converted back with the same matrix and range and
tagged with all four on the way out: what the model does not change (how the colours are meant to
be shown) comes out as it went in.  Untagged input is read the way players read it — BT.709 from
720 lines (or 1280 columns) up, BT.601 below, limited range — and the output is tagged explicitly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import av
import numpy as np

# FFmpeg's enum values (libavutil/pixfmt.h); swscale's SWS_CS_* matrix ids use the same numbers.
MATRIX_RGB, MATRIX_BT709, UNSPECIFIED, MATRIX_BT470BG, MATRIX_SMPTE170M = 0, 1, 2, 5, 6
MATRIX_BT2020_NCL, MATRIX_BT2020_CL = 9, 10
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2
PRIMARIES_BT709, PRIMARIES_SMPTE170M = 1, 6
TRANSFER_BT709, TRANSFER_SMPTE170M, TRANSFER_PQ, TRANSFER_HLG = 1, 6, 16, 18
RESERVED = 3

_MATRIX_NAMES = {0: "rgb", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
                 9: "bt2020nc", 10: "bt2020c", 14: "ictcp"}
_PRIMARIES_NAMES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
                    9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
_TRANSFER_NAMES = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
                   13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084 (PQ)",
                   17: "smpte428", 18: "arib-std-b67 (HLG)"}
# Matrices swscale converts with; others (ycgco, ictcp) fall back to the size default.
_SWS_MATRICES = {1: 1, 4: 4, 5: 5, 6: 6, 7: 7, 9: 9, 10: 9}


def _tag(value: int) -> int:
    return UNSPECIFIED if value in (UNSPECIFIED, RESERVED) else value


def is_hd(width: int, height: int) -> bool:
    """What players assume for untagged video: BT.709 from 720 lines (or 1280 columns) up."""
    return height >= 720 or width >= 1280


@dataclass(frozen=True)
class ColourTags:
    """The four colour tags of a video, each an FFmpeg enum value; ``tagged`` says whether the
    input carried them (False: they were inferred as a player would)."""

    matrix: int
    range: int
    primaries: int
    transfer: int
    tagged: bool = True

    @classmethod
    def of_frame(cls, frame: av.VideoFrame) -> ColourTags:
        """The frame's tags, with what is unspecified filled in as players do."""
        hd = is_hd(frame.width, frame.height)
        matrix, primaries, transfer = _tag(frame.colorspace), _tag(frame.color_primaries), _tag(frame.color_trc)
        rng = frame.color_range if frame.color_range in (RANGE_LIMITED, RANGE_FULL) else RANGE_UNSPECIFIED
        if rng == RANGE_UNSPECIFIED and frame.format.name.startswith("yuvj"):
            rng = RANGE_FULL  # the deprecated full-range formats carry the range in their name
        tagged = UNSPECIFIED not in (matrix, primaries, transfer)
        if frame.format.name.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "pal8", "gray")):
            matrix = MATRIX_RGB if matrix == UNSPECIFIED else matrix
        return cls(
            matrix=matrix if matrix != UNSPECIFIED else (MATRIX_BT709 if hd else MATRIX_SMPTE170M),
            range=rng if rng != RANGE_UNSPECIFIED else RANGE_LIMITED,
            primaries=primaries if primaries != UNSPECIFIED else (PRIMARIES_BT709 if hd else PRIMARIES_SMPTE170M),
            transfer=transfer if transfer != UNSPECIFIED else (TRANSFER_BT709 if hd else TRANSFER_SMPTE170M),
            tagged=tagged,
        )

    @property
    def is_hdr(self) -> bool:
        return self.transfer in (TRANSFER_PQ, TRANSFER_HLG)

    def describe(self) -> str:
        full = "full" if self.range == RANGE_FULL else "limited"
        text = (f"{_MATRIX_NAMES.get(self.matrix, self.matrix)}/{full}, primaries "
                f"{_PRIMARIES_NAMES.get(self.primaries, self.primaries)}, transfer "
                f"{_TRANSFER_NAMES.get(self.transfer, self.transfer)}")
        return text if self.tagged else f"untagged, read as {text}"

    def _sws_matrix(self) -> int | None:
        return _SWS_MATRICES.get(self.matrix)

    def to_rgb(self, frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
        """(height, width, 3) uint8 RGB of a decoded frame, converted with these tags' matrix and range."""
        return self._convert(frame, width, height, "rgb24")

    def to_rgb_alpha(self, frame: av.VideoFrame, width: int, height: int) -> tuple[np.ndarray, np.ndarray | None]:
        """RGB as ``to_rgb``, and the (height, width) alpha of a frame that has one: its picture then
        composited on white, as still images with transparency reach the model (None: no alpha)."""
        if not has_alpha(frame.format.name):
            return self.to_rgb(frame, width, height), None
        rgba = self._convert(frame, width, height, "rgba")
        alpha = np.ascontiguousarray(rgba[..., 3])
        weight = alpha[..., None].astype(np.uint16)
        rgb = (rgba[..., :3] * weight + 255 * (255 - weight) + 127) // 255  # straight alpha over white
        return rgb.astype(np.uint8), alpha

    def _convert(self, frame: av.VideoFrame, width: int, height: int, format: str) -> np.ndarray:
        if self.matrix == MATRIX_RGB:
            return frame.to_ndarray(format=format, width=width, height=height)
        return frame.reformat(
            width=width,
            height=height,
            format=format,
            src_colorspace=self._sws_matrix(),
            src_color_range=self.range,
        ).to_ndarray()

    def for_encoding(self, pix_fmt: str, width: int, height: int) -> ColourTags:
        """The tags to encode ``pix_fmt`` with: these, except that RGB input encoded as YUV gets the
        matrix players assume for its size, and so does a matrix swscale cannot encode (the file says
        what it holds)."""
        if is_rgb_format(pix_fmt) or self.matrix in _SWS_MATRICES:
            return self
        return replace(self, matrix=MATRIX_BT709 if is_hd(width, height) else MATRIX_SMPTE170M)

    def from_rgb(self, image: np.ndarray, pix_fmt: str, alpha: np.ndarray | None = None) -> av.VideoFrame:
        """A frame of ``pix_fmt`` from RGB (and ``alpha``, for a ``pix_fmt`` that holds one), encoded with
        these tags' matrix and range and tagged with all four (call on ``for_encoding``'s result)."""
        if alpha is not None and has_alpha(pix_fmt):
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.dstack([image, alpha])), format="rgba")
        else:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if is_rgb_format(pix_fmt):
            out = rgb if pix_fmt == rgb.format.name else rgb.reformat(format=pix_fmt)
        else:
            out = rgb.reformat(format=pix_fmt, dst_colorspace=self._sws_matrix(), dst_color_range=self.range)
        self.tag(out, pix_fmt)
        return out

    def tag(self, target: Any, pix_fmt: str) -> None:
        """Write the tags on a frame or an encoder's codec context (RGB formats carry no matrix or range)."""
        if not is_rgb_format(pix_fmt):
            target.colorspace = self.matrix
            target.color_range = self.range
        target.color_primaries = self.primaries
        target.color_trc = self.transfer


@functools.lru_cache(maxsize=64)
def has_alpha(pix_fmt: str) -> bool:
    """Whether frames of ``pix_fmt`` (yuva420p, rgba, gbrap, ya8, ...) carry an alpha channel."""
    try:
        return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.error.FFmpegError):
        return False


def is_rgb_format(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "rgba", "bgra"))
