"""Remuxing without re-encoding: packets copied from one container into another."""

from __future__ import annotations

from pathlib import Path

import av


def copy_head(src: Path, dst: Path, frames: int) -> None:
    """Remux the video packets up to the first keyframe after ``frames`` packets, without re-encoding
    (cutting at a keyframe keeps every copied frame decodable)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        seen = 0
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            if seen >= frames and packet.is_keyframe:
                break
            packet.stream = vout
            out.mux(packet)
            seen += 1
