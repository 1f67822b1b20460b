"""Sources: demux + decode with PyAV, yielding VideoFrames that carry their own timestamps."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import av

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.frame import VideoFrame
from cyclestream.engine.media.probe import VideoInfo, describe, open_input

log = logging.getLogger("cyclestream")


class VideoFileSource:
    """Every frame of a file's first video stream, in presentation order, plus its audio packets.

    Damage is survived, not hidden: packets that fail to decode are skipped and counted, a demuxer
    error ends reading like end-of-file, and ``damage_report()`` says what was lost.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: tuple[int, int] | None = None,
        options: dict[str, str] | None = None,
        format: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        audio: bool = True,
    ) -> None:
        self.path = str(path)
        self.container = open_input(path, options, format, timeout)
        try:
            self.info: VideoInfo = describe(self.container)
        except MediaError:
            self.container.close()
            raise
        self.video = self.container.streams.video[0]
        self.video.thread_type = "AUTO"  # frame + slice threads in the decoder
        self.audio_streams: list[Any] = list(self.container.streams.audio) if audio else []
        self.decoded = 0
        self.decode_errors = 0
        self.read_error: str | None = None
        self.frame_size: tuple[int, int] = size or (self.info.width, self.info.height)  # (width, height)

    def _frame(self, frame: av.VideoFrame, side: list[Any]) -> VideoFrame:
        pts = frame.pts
        if pts is None and self.info.average_rate:  # rare: raw streams without timestamps
            pts = round(self.decoded / self.info.average_rate / self.info.time_base)
        out = VideoFrame(
            image=frame.to_ndarray(format="rgb24", width=self.frame_size[0], height=self.frame_size[1]),
            pts=pts,
            time_base=self.info.time_base,
            index=self.decoded,
            side_packets=side,
            captured_at=time.perf_counter(),
        )
        self.decoded += 1
        return out

    def _decode(self, packet: Any | None) -> list[av.VideoFrame]:
        try:
            return list(self.video.codec_context.decode(packet)) if packet is None else list(packet.decode())
        except av.error.FFmpegError:
            self.decode_errors += 1
            return []

    def frames(self) -> Iterator[VideoFrame]:
        """Decoded frames in order.  The container stays open until ``close()``: the audio packets
        riding on the frames point into it until the sink has muxed them."""
        side: list[Any] = []
        packets = self.container.demux(self.video, *self.audio_streams)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:  # truncated or damaged container: stop here
                self.read_error = e.strerror or str(e)
                for frame in self._decode(None):  # drain what the decoder still holds
                    yield self._frame(frame, side)
                    side = []
                break
            if packet.stream.index != self.video.index:
                if packet.dts is not None and packet.size:
                    side.append(packet)
                continue
            for frame in self._decode(packet):
                yield self._frame(frame, side)
                side = []
        if self.decoded == 0:
            reason = self.read_error or ("every packet failed to decode" if self.decode_errors else "it is empty")
            raise MediaError(f"no frame of {self.path} could be decoded ({reason})")

    def damage_report(self) -> str | None:
        """None for a clean read, else one line saying what was lost."""
        expected = self.info.expected_frames
        lost = max(0, expected - self.decoded)
        if not (lost or self.decode_errors or self.read_error):
            return None
        parts = [f"decoded {self.decoded}" + (f" of {expected} frames ({lost} lost)" if expected else " frames")]
        if self.decode_errors:
            parts.append(f"{self.decode_errors} damaged packets skipped")
        if self.read_error:
            parts.append(f"reading stopped early: {self.read_error}")
        return f"{self.path} is damaged or truncated: " + "; ".join(parts)

    def close(self) -> None:
        self.container.close()
