"""HDR10 static metadata: the mastering display (SMPTE ST 2086: primaries, white point, luminance range) and
the content light level (CTA-861.3: MaxCLL, MaxFALL), read from the first decoded frame's side data and
handed to the encoders that write them into the bitstream (libx265's SEI, SVT-AV1's metadata OBUs).

FFmpeg gives them as frame side data (``AVMasteringDisplayMetadata``: ten ``AVRational`` and two ``int``
flags; ``AVContentLightMetadata``: two ``unsigned``); PyAV exposes their bytes, which are read here.  A new
frame cannot carry side data through PyAV, so the encoder's own options say them: x265's ``master-display``
(chromaticities in 0.00002 units, luminance in 0.0001 cd/m²) and ``max-cll``; SVT-AV1's
``mastering-display`` and ``content-light``.  Encoders with neither (x264, VP9, ...) cannot keep them, and
the job says so in one line.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

_MASTERING = "MASTERING_DISPLAY_METADATA"
_LIGHT = "CONTENT_LIGHT_LEVEL"


def _rationals(data: bytes, count: int) -> list[Fraction]:
    values = struct.unpack(f"={2 * count}i", data[: 8 * count])
    return [Fraction(n, d) if d else Fraction(0) for n, d in zip(values[::2], values[1::2], strict=True)]


@dataclass(frozen=True)
class HdrMetadata:
    """Mastering display (``primaries``: red, green, blue (x, y); ``white``; luminance in cd/m²) and content
    light level (cd/m²); either part may be absent."""

    primaries: tuple[tuple[Fraction, Fraction], ...] | None = None
    white: tuple[Fraction, Fraction] | None = None
    luminance: tuple[Fraction, Fraction] | None = None  # (min, max)
    max_cll: int | None = None
    max_fall: int | None = None

    @classmethod
    def of_frame(cls, frame: Any) -> HdrMetadata | None:
        """What ``frame``'s side data says, or None when it says nothing of it."""
        fields: dict[str, Any] = {}
        for item in frame.side_data if frame is not None else ():  # (its values() fails in PyAV 18)
            kind, data = str(getattr(item.type, "name", item.type)), bytes(item)
            if kind.endswith(_MASTERING) and len(data) >= 88:
                values = _rationals(data, 10)
                has_primaries, has_luminance = struct.unpack("=2i", data[80:88])
                if has_primaries:
                    fields["primaries"] = tuple((values[2 * i], values[2 * i + 1]) for i in range(3))
                    fields["white"] = (values[6], values[7])
                if has_luminance:
                    fields["luminance"] = (values[8], values[9])
            elif kind.endswith(_LIGHT) and len(data) >= 8:
                fields["max_cll"], fields["max_fall"] = struct.unpack("=2I", data[:8])
        return cls(**fields) if fields else None

    def describe(self) -> str:
        parts = []
        if self.luminance:
            parts.append(f"mastering display {float(self.luminance[0]):g}–{float(self.luminance[1]):g} cd/m²")
        elif self.primaries:
            parts.append("mastering display primaries")
        if self.max_cll is not None:
            parts.append(f"MaxCLL {self.max_cll}, MaxFALL {self.max_fall}")
        return ", ".join(parts)

    def encoder_options(self, codec: str) -> dict[str, str] | None:
        """The options that make ``codec`` write this metadata, or None for an encoder that cannot."""
        if codec == "libx265":
            params = []
            if self.primaries and self.white and self.luminance:
                (r, g, b), w, (low, high) = self.primaries, self.white, self.luminance

                def xy(p: tuple[Fraction, Fraction]) -> str:
                    return f"({round(p[0] * 50000)},{round(p[1] * 50000)})"

                params.append(f"master-display=G{xy(g)}B{xy(b)}R{xy(r)}WP{xy(w)}"
                              f"L({round(high * 10000)},{round(low * 10000)})")  # fmt: skip
            if self.max_cll is not None:
                params.append(f"max-cll={self.max_cll},{self.max_fall}")
            # x265 prints its summary once it is given any params, unless told its log level again
            return {"x265-params": ":".join(["log-level=error", *params])} if params else {}
        if codec == "libsvtav1":
            params = []
            if self.primaries and self.white and self.luminance:
                (r, g, b), w, (low, high) = self.primaries, self.white, self.luminance

                def fxy(p: tuple[Fraction, Fraction]) -> str:
                    return f"({float(p[0]):.5f},{float(p[1]):.5f})"

                params.append(f"mastering-display=G{fxy(g)}B{fxy(b)}R{fxy(r)}WP{fxy(w)}"
                              f"L({float(high):.4f},{float(low):.4f})")  # fmt: skip
            if self.max_cll is not None:
                params.append(f"content-light={self.max_cll},{self.max_fall}")
            return {"svtav1-params": ":".join(params)} if params else {}
        return None
