"""Reading back what a test wrote: frame timestamps, packets, decoded frames (real PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def video_times(path: Path) -> list[float]:
    """Presentation times (seconds) of every decoded video frame, in decode-output order."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [float(f.pts * stream.time_base) for f in c.decode(stream)]


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    """(time, payload) of every audio packet, as demuxed."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        stream = c.streams.audio[0]
        return [(float(p.pts * stream.time_base), bytes(p)) for p in c.demux(stream) if p.size]


def stream_summary(path: Path) -> dict[str, object]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return {
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "codec": v.codec_context.name,
            "rate": v.average_rate,
            "audio": len(c.streams.audio),
            "duration": c.duration / av.time_base if c.duration else None,
        }
