"""The PyAV/aiortc boundary of `serve` (engine/serve/): received frames in, translated frames out.

A browser sends whatever its camera and encoder give (any size, and WebRTC lowers the resolution
when the network or CPU is short), so every received frame is scaled to cover the model's size and
cropped to it in the middle (never stretched), converted to RGB with its own colour tags.  Only the
newest received frame waits (``Inbox``): the asyncio loop replaces it as frames arrive and the
client's pipeline takes it, so no backlog builds up behind a slow model.  Translated frames go back
as BT.601 limited-range 4:2:0 (what WebRTC's VP8 and H.264 carry) through ``OutgoingTrack``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from cyclestream.engine.media.colour import (
    MATRIX_SMPTE170M,
    PRIMARIES_SMPTE170M,
    RANGE_LIMITED,
    TRANSFER_SMPTE170M,
    ColourTags,
)
from cyclestream.engine.media.frame import VideoFrame
from cyclestream.engine.media.live import LIVE_TIME_BASE, MIN_FRAME_TICKS

# What a browser assumes for untagged VP8/H.264 at WebRTC sizes.
WEBRTC_COLOUR = ColourTags(MATRIX_SMPTE170M, RANGE_LIMITED, PRIMARIES_SMPTE170M, TRANSFER_SMPTE170M)


def to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB: ``frame`` scaled to cover width x height and cropped in the middle."""
    scale = max(width / frame.width, height / frame.height)
    cover_w, cover_h = max(width, round(frame.width * scale)), max(height, round(frame.height * scale))
    image = ColourTags.of_frame(frame).to_rgb(frame, cover_w, cover_h)
    top, left = (cover_h - height) // 2, (cover_w - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width])


def to_av_frame(image: np.ndarray, pts: int | None) -> av.VideoFrame:
    """A yuv420p frame to send, tagged BT.601 limited range, with ``pts`` in LIVE_TIME_BASE (1/90000)."""
    frame = WEBRTC_COLOUR.from_rgb(image, "yuv420p")
    frame.pts = pts
    frame.time_base = LIVE_TIME_BASE
    return frame


class Inbox:
    """The newest frame received from one client, waiting for its pipeline.  ``put`` (the asyncio loop)
    replaces what has not been taken yet; ``frames`` (the pipeline's decode thread) yields VideoFrames
    at the model's size, stamped on one monotonic clock, until ``close``."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.received = 0  # frames that arrived from the client
        self.replaced = 0  # of those, replaced by a newer one before the pipeline took them
        self._item: tuple[av.VideoFrame, float] | None = None
        self._closed = False
        self._cond = threading.Condition()

    def put(self, frame: av.VideoFrame, arrived: float) -> None:
        with self._cond:
            self.received += 1
            if self._item is not None:
                self.replaced += 1
            self._item = (frame, arrived)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _take(self) -> tuple[av.VideoFrame, float] | None:
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait(0.5)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def frames(self) -> Iterator[VideoFrame]:
        first: float | None = None
        last_pts = -MIN_FRAME_TICKS
        index = 0
        while (item := self._take()) is not None:
            frame, arrived = item
            first = arrived if first is None else first
            # Output time 0 is the first frame's arrival; at least 1 ms apart, always increasing.
            pts = max(last_pts + MIN_FRAME_TICKS, round((arrived - first) / LIVE_TIME_BASE))
            last_pts = pts
            image = to_rgb(frame, self.width, self.height)
            yield VideoFrame(image=image, pts=pts, time_base=LIVE_TIME_BASE, index=index, captured_at=arrived)
            index += 1


class OutgoingTrack(MediaStreamTrack):
    """The translated video for one client: aiortc's sender awaits ``recv``; ``offer`` (on the loop)
    hands it the newest translated frame (one that was not sent yet is replaced)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._frame: av.VideoFrame | None = None
        self._ready = asyncio.Event()
        self.sent = 0

    def offer(self, frame: av.VideoFrame) -> None:
        if self.readyState == "live":
            self._frame = frame
            self._ready.set()

    async def recv(self) -> av.VideoFrame:
        while self._frame is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        frame, self._frame = self._frame, None
        self.sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()  # wake a waiting recv so the sender ends
