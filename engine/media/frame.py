"""What travels down the pipeline: a decoded frame with its own timestamp, never recomputed."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np


@dataclass
class VideoFrame:
    """One RGB frame (H, W, 3) uint8 with the source's pts and time base.

    ``side_packets`` are the non-video packets (audio, subtitles) demuxed since the previous video
    frame; they ride with the frame so the sink can remux them in their original interleaving.
    """

    image: np.ndarray
    pts: int | None
    time_base: Fraction
    index: int
    side_packets: list[Any] = field(default_factory=list)
    captured_at: float = 0.0  # time.perf_counter() when the source produced it (latency statistics)
    warmup: bool = False  # translated (the stabiliser sees it) but not written: a segment's lead-in frames
    alpha: np.ndarray | None = None  # (H, W) uint8 of a frame with transparency; ``image`` is it on white

    @property
    def time(self) -> float | None:
        return None if self.pts is None else float(self.pts * self.time_base)


@dataclass
class TranslatedFrame:
    """A model output paired with the frame it came from (for previews and timestamps)."""

    image: np.ndarray
    source: VideoFrame
