"""An animated image (GIF, WebP, APNG) written as a video: its frames with their own durations.

Pictures are sRGB, so the video is tagged BT.709 primaries with the sRGB transfer, and encoded with
the matrix players assume for its size; each frame lasts as long as it did in the animation
(millisecond timestamps).  What a video cannot hold is named: transparency, the loop count.
"""

from __future__ import annotations

import itertools
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from cyclestream.engine.media.colour import MATRIX_RGB, PRIMARIES_BT709, RANGE_LIMITED, ColourTags
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.media.frame import TranslatedFrame, VideoFrame
from cyclestream.engine.media.probe import VideoInfo
from cyclestream.engine.media.sinks import VideoFileSink

TRANSFER_SRGB = 13  # IEC 61966-2-1
SRGB = ColourTags(MATRIX_RGB, RANGE_LIMITED, PRIMARIES_BT709, TRANSFER_SRGB)
MILLISECONDS = Fraction(1, 1000)
ANIMATION_VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm"})  # a translated animation may become


def is_animation_video_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in ANIMATION_VIDEO_SUFFIXES


def write_animation_video(
    sources: list[np.ndarray],
    translated: list[np.ndarray],
    durations: list[float],
    path: str | os.PathLike[str],
    *,
    encode: EncodeOptions,
    label: str,
) -> None:
    """Encode ``translated`` (frames of ``sources``, each shown ``durations[i]`` ms) into ``path``."""
    height, width = translated[0].shape[:2]
    # each frame's milliseconds (at least 1); without durations, 10 frames a second
    lengths = [max(1, round(d)) for d in durations] if len(durations) == len(translated) else [100] * len(translated)
    times = [0, *itertools.accumulate(lengths[:-1])]
    total = sum(lengths)
    rate = Fraction(len(translated) * 1000, total).limit_denominator(1000)
    info = VideoInfo(width, height, "", MILLISECONDS, rate, len(translated), total / 1000, 0, colour=SRGB)
    sink = VideoFileSink(path, info, options=encode, label=label)
    try:
        for i, (source, image) in enumerate(zip(sources, translated, strict=True)):
            sink.write(TranslatedFrame(image, VideoFrame(source, times[i], MILLISECONDS, i)))
    except BaseException:
        sink.abort()
        raise
    sink.close()
