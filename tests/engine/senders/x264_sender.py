"""An ordinary live sender, independent of cyclestream: PyAV/FFmpeg only, libx264 with x264's defaults
(one keyframe every 250 frames, B-frames, lookahead), muxed to ``--format`` and pushed to ``url`` in real time.

    python tests/engine/senders/x264_sender.py udp://127.0.0.1:5000?pkt_size=1316 --fps 25 --seconds 20
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

import av
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--size", default="160x120")
    p.add_argument("--format", default="mpegts")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    y, x = np.mgrid[0:height, 0:width]
    with av.open(args.url, "w", format=args.format) as out:
        video = out.add_stream("libx264", rate=args.fps)  # no options: x264 defaults (keyint 250)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        start = time.perf_counter()
        i = 0
        while i < args.seconds * args.fps:
            if (delay := start + i / args.fps - time.perf_counter()) > 0:
                time.sleep(delay)
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (x + 3 * i) % 256
            img[..., 1] = (y + 2 * i) % 256
            img[..., 2] = (i * 5) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, args.fps)
            out.mux(video.encode(frame))
            i += 1
        out.mux(video.encode(None))


if __name__ == "__main__":
    main()
