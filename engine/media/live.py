"""Live sources: cameras, network streams, FFmpeg test sources, and files played in real time.

A live source stamps each frame with its capture time on one continuous clock (time base 1/90000),
so output timestamps stay monotonic and in wall-clock step with the input across drops and
reconnects.  A source that stalls (no data for ``read_timeout`` seconds) or dies is reopened with
back-off up to ``reconnect`` times; then the stream ends like a file does, and ``end_reason`` says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.frame import VideoFrame
from cyclestream.engine.media.probe import VideoInfo
from cyclestream.engine.media.sources import VideoFileSource

log = logging.getLogger("cyclestream")

LIVE_TIME_BASE = Fraction(1, 90000)
NETWORK_SCHEMES = ("udp", "rtp", "rtsp", "rtmp", "rtmps", "srt", "http", "https", "tcp")


@dataclass(frozen=True)
class SourceSpec:
    """What ``--source`` names, resolved to PyAV's url, format and options."""

    url: str
    kind: str  # "file", "lavfi", "v4l2", "network"
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_live(self) -> bool:
        return self.kind != "file"


def parse_source(
    text: str, size: tuple[int, int] | None = None, fps: float | None = None, input_format: str | None = None
) -> SourceSpec:
    """``lavfi:testsrc2=size=640x360:rate=30``, ``/dev/video0`` (or ``v4l2:/dev/video0``), a URL, a file."""
    if text.startswith("lavfi:"):
        return SourceSpec(text[len("lavfi:") :], "lavfi", "lavfi")
    if text.startswith("v4l2:") or text.startswith("/dev/video"):
        options = {}
        if size:
            options["video_size"] = f"{size[0]}x{size[1]}"
        if fps:
            options["framerate"] = f"{fps:g}"
        if input_format:
            options["input_format"] = input_format  # e.g. mjpeg, yuyv422
        return SourceSpec(text.removeprefix("v4l2:"), "v4l2", "v4l2", options)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme:
        if scheme not in NETWORK_SCHEMES:
            raise MediaError(f"unsupported source scheme {scheme}:// (use one of {', '.join(NETWORK_SCHEMES)})")
        # Small probe and no input buffering: start fast and keep latency low.
        options = {"fflags": "nobuffer", "probesize": "200000", "analyzeduration": "500000"}
        if scheme == "udp":
            options |= {"overrun_nonfatal": "1", "fifo_size": "50000"}
        return SourceSpec(text, "network", None, options)
    if not Path(text).exists():
        raise MediaError(f"source not found: {text}")
    return SourceSpec(text, "file")


class LiveSource:
    """Frames from a live (or real-time paced) source, stamped on one monotonic capture clock."""

    def __init__(
        self,
        spec: SourceSpec,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        realtime: bool = False,
        reconnect: int = 3,
        read_timeout: float = 3.0,
    ) -> None:
        self.spec, self.size, self.fps = spec, size, fps
        # Files (with --realtime) and FFmpeg test sources are paced at their own rate; devices and
        # network streams pace themselves.
        self.paced = spec.kind == "lavfi" or (realtime and spec.kind == "file")
        self.reconnect, self.read_timeout = reconnect, read_timeout
        self.end_reason: str | None = None
        self.captured = 0
        self._open_first()

    def _open(self) -> VideoFileSource:
        return VideoFileSource(
            self.spec.url,
            self.size,
            self.spec.options,
            self.spec.format,
            timeout=(max(self.read_timeout, 10.0), self.read_timeout) if self.spec.is_live else None,
            audio=False,
        )

    def _open_first(self) -> None:
        """Learn the frame size and rate, then close: the backend is prepared before reading starts,
        and a live source left unread meanwhile would time out or overflow."""
        probe = self._open()
        try:
            self.size = self.size or probe.frame_size  # every later (re)connection keeps this size
            info = probe.info
        finally:
            probe.close()
        rate = self.fps or (float(info.average_rate) if info.average_rate else 30.0)
        self.info = VideoInfo(
            self.size[0], self.size[1], info.codec, LIVE_TIME_BASE, Fraction(rate).limit_denominator(1001), 0, None, 0
        )
        self._current: VideoFileSource | None = None

    def _reopen(self, attempt: int) -> VideoFileSource | None:
        delay = min(8.0, 0.5 * 2**attempt)
        log.warning(
            "source %s: %s; reconnecting in %.1f s (%d/%d)",
            self.spec.url,
            self.end_reason,
            delay,
            attempt + 1,
            self.reconnect,
        )
        time.sleep(delay)
        try:
            return self._open()
        except MediaError as e:
            self.end_reason = str(e)
            return None

    def frames(self) -> Iterator[VideoFrame]:
        start = time.perf_counter()
        last_pts, next_due, attempt = -1, 0.0, 0
        clock_offset: float | None = None  # source time → wall clock, for real-time pacing of files
        first_capture: float | None = None
        try:
            self._current = self._open()
        except MediaError as e:
            self.end_reason = str(e)
        while True:
            source, self._current = self._current, None
            if source is not None:
                try:
                    for frame in source.frames():
                        attempt = 0
                        t_src = frame.time if frame.time is not None else time.perf_counter() - start
                        if self.fps:  # --fps: keep at most fps frames per second of source time
                            if t_src + 1e-6 < next_due:
                                continue
                            next_due = max(next_due + 1 / self.fps, t_src)
                        if self.paced:
                            if clock_offset is None:
                                clock_offset = time.perf_counter() - start - t_src
                            delay = t_src + clock_offset - (time.perf_counter() - start)
                            if delay > 0:
                                time.sleep(delay)
                        now = time.perf_counter()
                        if first_capture is None:
                            first_capture = now  # output time 0 is the first captured frame
                        pts = max(last_pts + 1, round((now - first_capture) / LIVE_TIME_BASE))
                        last_pts = pts
                        frame.pts, frame.time_base, frame.captured_at = pts, LIVE_TIME_BASE, now
                        frame.index, frame.side_packets = self.captured, []
                        self.captured += 1
                        yield frame
                    self.end_reason = source.read_error or "end of stream"
                except MediaError as e:  # nothing decoded this time
                    self.end_reason = str(e)
                finally:
                    source.close()
            if not self.spec.is_live:
                self.end_reason = None if self.end_reason == "end of stream" else self.end_reason
                return
            if attempt >= self.reconnect:
                return
            self._current = self._reopen(attempt)
            attempt += 1

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
