"""Sources: demux + decode with PyAV, yielding VideoFrames that carry their own timestamps."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.colour import ColourTags, has_alpha
from cyclestream.engine.media.deinterlace import Deinterlace, Deinterlacer, wanted
from cyclestream.engine.media.frame import VideoFrame
from cyclestream.engine.media.hdr import HdrMetadata
from cyclestream.engine.media.passthrough import Passthrough, is_attached_picture
from cyclestream.engine.media.pipes import STDIN_NAME, is_stdio, open_stdin
from cyclestream.engine.media.probe import VideoInfo, describe, open_input

log = logging.getLogger("cyclestream")

# VP8/VP9 keep alpha in a second bitstream (Matroska BlockAdditional, ``alpha_mode`` 1) that only libvpx's
# decoders read; FFmpeg's own decoders give the colour alone.
_ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}


def decoder_for(stream: Any) -> Any:
    """The codec context that decodes ``stream`` with its alpha, where the default one would drop it."""
    name = _ALPHA_DECODERS.get(stream.codec_context.name)
    if name is None or str(stream.metadata.get("alpha_mode", stream.metadata.get("ALPHA_MODE", ""))) != "1":
        return stream.codec_context
    try:
        ctx = av.CodecContext.create(name, "r")
    except (av.error.FFmpegError, ValueError):  # a PyAV without libvpx: the colour alone
        return stream.codec_context
    ctx.extradata = stream.codec_context.extradata
    ctx.thread_type = "AUTO"
    return ctx


class VideoFileSource:
    """Every frame of a file's main video stream, in presentation order, upright and converted to RGB
    with the input's colour matrix and range, plus the packets of every other stream.

    The first frame is decoded before reading starts (``first``): it fixes the geometry (the display
    matrix's rotation is applied, so frames reach the model upright), the colour tags and the frame
    size.  Damage is survived, not hidden: packets that fail to decode are skipped and counted, a
    demuxer error ends reading like end-of-file, and ``damage_report()`` says what was lost.
    Interlaced video is deinterlaced as ``deinterlace`` says (engine/media/deinterlace.py).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        size: tuple[int, int] | None = None,
        options: dict[str, str] | None = None,
        format: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        audio: bool = True,
        deinterlace: Deinterlace = "auto",
    ) -> None:
        """``audio=False`` reads the video stream alone (live sources); else every other stream rides along."""
        self.path = STDIN_NAME if is_stdio(path) else str(path)  # `-`: standard input, read without seeking
        self.container = open_stdin(format) if is_stdio(path) else open_input(path, options, format, timeout)
        try:
            self.info: VideoInfo = describe(self.container)
        except MediaError:
            self.container.close()
            raise
        self.video = self.container.streams.video[self.info.video_index]
        self.video.thread_type = "AUTO"  # frame + slice threads in the decoder
        self._decoder = decoder_for(self.video)
        self._sample_aspect_ratio = self.video.sample_aspect_ratio  # read now: streams die with the container
        self.passthrough = Passthrough.of(self.container, self.video) if audio else Passthrough()
        self.decoded = 0
        self.decode_errors = 0
        self.discarded = 0  # video packets the container marks as not to be shown (edit lists)
        self.read_error: str | None = None
        self.trailing_packets: list[Any] = []  # packets after the last video frame (audio outlasting video)
        self.size_changes: list[str] = []  # "WxH from frame N" each time the coded size changes
        self._coded_size: tuple[int, int] | None = None
        self._size = size
        self._deinterlace = deinterlace
        self.deinterlacer: Deinterlacer | None = None  # set at the first frame when it deinterlaces
        self.interlaced = False  # the first frame is flagged interlaced
        self._raw = self._raw_frames()

    @functools.cached_property
    def first(self) -> av.VideoFrame | None:
        """The first decodable frame (decoded now, yielded first by ``frames()``); None if there is none."""
        self._peeked = next(self._raw, None)
        return self._peeked[0] if self._peeked else None

    @property
    def start_time(self) -> float | None:
        """The input's start (seconds): its earliest stream's first timestamp, None when unknown."""
        start = self.container.start_time
        return None if start is None else start / av.time_base

    @functools.cached_property
    def quarter_turns(self) -> int:
        """Counter-clockwise quarter turns that make the picture upright (from the display matrix)."""
        first = self.first
        return round((first.rotation if first is not None else 0) / 90) % 4

    @functools.cached_property
    def colour(self) -> ColourTags | None:
        return ColourTags.of_frame(self.first) if self.first is not None else None

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames this source yields: upright, or ``size`` if one was asked for."""
        if self._size is not None:
            return self._size
        first = self.first
        w, h = (first.width, first.height) if first is not None else (self.info.width, self.info.height)
        return (h, w) if self.quarter_turns % 2 else (w, h)

    @property
    def frame_info(self) -> VideoInfo:
        """The stream as the frames leave this source: upright size, colour tags, pixel aspect."""
        sar = self._sample_aspect_ratio
        if sar and self.quarter_turns % 2:
            sar = 1 / sar
        width, height = self.frame_size
        return dataclasses.replace(self.info, width=width, height=height, colour=self.colour,
                                   sample_aspect_ratio=sar if self._size is None else None,
                                   hdr=HdrMetadata.of_frame(self.first),
                                   alpha=self.first is not None and has_alpha(self.first.format.name))  # fmt: skip

    def _image(self, frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray | None]:
        width, height = self.frame_size
        turns = self.quarter_turns
        if turns % 2:
            width, height = height, width  # scale before turning
        if (frame.width, frame.height) != self._coded_size:
            if self._coded_size is not None:
                self.size_changes.append(f"{frame.width}x{frame.height} from frame {self.decoded}")
            self._coded_size = (frame.width, frame.height)
        tags = self.colour or ColourTags.of_frame(frame)
        image, alpha = tags.to_rgb_alpha(frame, width, height)
        if turns:
            image = np.ascontiguousarray(np.rot90(image, turns))
            alpha = None if alpha is None else np.ascontiguousarray(np.rot90(alpha, turns))
        return image, alpha

    def _frame(self, frame: av.VideoFrame, side: list[Any]) -> VideoFrame:
        pts = frame.pts
        if pts is None and self.info.average_rate:  # rare: raw streams without timestamps
            pts = round(self.decoded / self.info.average_rate / self.info.time_base)
        image, alpha = self._image(frame)
        out = VideoFrame(
            image=image,
            alpha=alpha,
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
            return list(self._decoder.decode(packet))
        except av.error.FFmpegError:
            self.decode_errors += 1
            return []

    def _raw_frames(self) -> Iterator[tuple[av.VideoFrame, list[Any]]]:
        """Decoded frames, deinterlaced where they should be, each with the other streams' packets demuxed
        since the previous frame (the deinterlacer's one frame of delay keeps each frame's packets with it)."""
        pending: deque[list[Any]] = deque()
        first = True
        for frame, side in self._decoded_frames():
            if first:  # the first frame decides
                first = False
                self.interlaced = bool(frame.interlaced_frame)
                if wanted(self._deinterlace, frame):
                    self.deinterlacer = Deinterlacer(self.video.time_base, every_frame=self._deinterlace == "on",
                                                     flagged=self.interlaced)  # fmt: skip
            if self.deinterlacer is None:
                yield frame, side
                continue
            pending.append(side)
            for out in self.deinterlacer.push(frame):
                yield out, pending.popleft()
        if self.deinterlacer is not None:
            for out in self.deinterlacer.push(None):
                yield out, pending.popleft() if pending else []
            self.trailing_packets = [p for side in pending for p in side] + self.trailing_packets

    def _decoded_frames(self) -> Iterator[tuple[av.VideoFrame, list[Any]]]:
        """Decoded frames, each with the other streams' packets demuxed since the previous frame."""
        side: list[Any] = []
        packets = self.container.demux(self.video, *self.passthrough.streams)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:  # truncated or damaged container: stop here
                self.read_error = e.strerror or str(e)
                for frame in self._decode(None):  # drain what the decoder still holds
                    yield frame, side
                    side = []
                break
            if packet.stream.index != self.video.index:
                if packet.size and packet.dts is None and is_attached_picture(packet.stream):
                    packet.pts = packet.dts = 0  # cover art: one picture, untimed
                if packet.dts is not None and packet.size:
                    side.append(packet)
                continue
            if packet.is_discard:  # before an edit list's start (any `-ss … -c copy` trim): decoded, not shown
                self.discarded += 1
            for frame in self._decode(packet):
                yield frame, side
                side = []
        self.trailing_packets = side

    def frames(self) -> Iterator[VideoFrame]:
        """Decoded frames in order.  The container stays open until ``close()``: the packets riding on
        the frames point into it until the sink has muxed them."""
        if self.first is not None:
            yield self._frame(*self._peeked)
            for frame, side in self._raw:
                yield self._frame(frame, side)
        if self.decoded == 0:
            reason = self.read_error or ("every packet failed to decode" if self.decode_errors else "it is empty")
            raise MediaError(f"no frame of {self.path} could be decoded ({reason})")

    def damage_report(self) -> str | None:
        """None for a clean read, else one line saying what was lost."""
        expected = self.info.expected_frames
        if self.info.frames:  # the container's count includes the packets an edit list hides: they are not lost
            expected = max(0, expected - self.discarded)
        lost = max(0, expected - self.decoded)
        if not (lost or self.decode_errors or self.read_error):
            return None
        parts = [f"decoded {self.decoded}" + (f" of {expected} frames ({lost} lost)" if expected else " frames")]
        if self.decode_errors:
            parts.append(f"{self.decode_errors} damaged packets skipped")
        if self.read_error:
            parts.append(f"reading stopped early: {self.read_error}")
        return f"{self.path} is damaged or truncated: " + "; ".join(parts)

    def notes(self) -> list[str]:
        """One line for each thing about the input the output cannot show as it was."""
        notes = []
        if self.size_changes:
            w, h = self.frame_size
            notes.append(f"{self.path} changes frame size mid-stream ({', '.join(self.size_changes)}); "
                         f"those frames were scaled to {w}x{h}")
        if self.deinterlacer is not None:
            notes.append(f"{self.path} is interlaced: deinterlaced with {self.deinterlacer.describe()} before the "
                         "model, one frame per frame; the output is progressive")  # fmt: skip
        elif self.interlaced:
            notes.append(f"{self.path} is interlaced: its woven fields went to the model as they are "
                         "(--deinterlace off), combing included; the output is tagged progressive")  # fmt: skip
        if self.colour is not None and self.colour.is_hdr:
            notes.append(f"{self.path} is HDR ({self.colour.describe()}): the model sees it as SDR; "
                         "the output keeps the HDR tags")
        return notes

    def close(self) -> None:
        self.container.close()
