"""How translated video is encoded: the encoder, its quality and speed knobs, the pixel format, the muxer.
Imports no PyAV (the command line reads these declarations for --help)."""

from __future__ import annotations

from dataclasses import dataclass

from cyclestream.engine.options import Options, option


@dataclass(frozen=True, kw_only=True)
class EncodeOptions(Options):
    codec: str = option("libx264", help="video encoder (libx264, libx265, libvpx-vp9, libsvtav1, ...)")
    crf: int | None = option(18, min=0, max=63, help="constant quality, lower is better: 0-51 (x264, x265) or "
                             "0-63 (vpx, AV1)")
    preset: str | None = option("medium", help="encoder speed preset (any encoder with one)")
    pix_fmt: str = option("yuv420p", help="output pixel format (yuv420p10le keeps 10 bits)")
    encoder_tune: str | None = option(None, flag="", help="x264/x265 --tune: zerolatency for live output")
    gop: int | None = option(None, flag="", min=1, help="frames between keyframes (live viewers can join at each)")
    container_format: str | None = option(None, flag="", help="muxer, e.g. mpegts for udp://, flv for rtmp:// "
                                          "(None: from the name)")
    container_options: tuple[tuple[str, str], ...] = option((), flag="", help="muxer options, e.g. "
                                                            "(('movflags', 'frag_keyframe'),)")


# The encoding of live output (``stream``): quick to start, no frame held back by the encoder.  Its crf,
# preset and tune are the live job's own defaults, left out quietly for an encoder without such options.
LIVE_ENCODE = EncodeOptions(codec="libx264", crf=23, preset="veryfast", encoder_tune="zerolatency")
