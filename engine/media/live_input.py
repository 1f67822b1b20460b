"""One connection to a live input: opened in short interruptible slices, read from its first keyframe.

The connection that learns the frame size is the one that is read: nothing is probed and reopened,
so a sender with a long keyframe interval (x264's default is 250 frames) is decoded from the first
keyframe that arrives, whether it started before or after us.  Packets before that keyframe, and
packets the decoder rejects, are skipped and counted rather than treated as errors.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import av

from cyclestream.engine.errors import CycleStreamError, MediaError
from cyclestream.engine.media.deinterlace import Deinterlace, Deinterlacer, wanted
from cyclestream.engine.media.probe import open_input

# The longest one attempt to open a silent RTP input blocks before the stop flag is looked at again.
# FFmpeg's interrupt callback (PyAV's open timeout) ends the attempt; a silent attempt loses nothing.
OPEN_SLICE = 1.0


def ends_on_silence(url: str) -> bool:
    """Whether FFmpeg's own reader ends an open or a read after a time without data (its udp ``timeout``
    option): then an open is never cut while data arrives, only after a silence."""
    return url.lower().startswith("udp:")


def _no_data(url: str, error: BaseException | None) -> bool:
    """Whether ``error`` ended an open or a read for want of data: PyAV's timeout (FFmpeg's interrupt
    callback), or FFmpeg's udp reader giving up after its ``timeout`` without data."""
    if isinstance(error, av.error.ExitError):
        return True
    return ends_on_silence(url) and isinstance(error, av.error.OSError) and error.errno == errno.EIO


class NoData(MediaError):
    """A live input that sent nothing FFmpeg could open for the whole wait (``seconds``)."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(f"no data from {url} for {seconds:g} s")
        self.seconds = seconds


class SourceStopped(CycleStreamError):
    """The job was stopped (Ctrl-C, SIGTERM, --duration) while waiting on the source."""


def not_a_stream(url: str, seconds: float | None = None) -> str:
    """The line for datagrams that arrive but do not read as a stream."""
    during = f" for {seconds:g} s" if seconds is not None else ""
    return (f"data arrives at {url}, but none of it read as a video stream{during} "
            "(expected MPEG-TS or RTP from the sender)")


def open_live(
    url: str,
    options: dict[str, str],
    *,
    format: str | None,
    stop: threading.Event,
    open_timeout: float | None,
    read_timeout: float | None,
    sliced: bool = True,
) -> Any:
    """``av.open`` that gives up after ``open_timeout`` seconds without data (MediaError).

    ``sliced``: for inputs that wait for datagrams (UDP, RTP), the wait is cut into attempts, and the
    stop flag is looked at between them (SourceStopped).  UDP's attempts end after ``read_timeout``
    seconds of silence (FFmpeg's udp ``timeout``), never while data arrives, so a sender that starts
    at any moment loses nothing; RTP's are cut by FFmpeg's interrupt callback every ``OPEN_SLICE``
    seconds.  Inputs with a handshake (RTSP, HTTP, RTMP) open in one attempt: a slow handshake cut
    short would fail, not wait.  Either way the job itself never waits on this call: it runs on the
    source's reader thread.  ``open_timeout`` None: a file or test source, opened once with no timeout."""
    if open_timeout is None:
        return open_input(url, options, format)
    deadline = time.monotonic() + open_timeout
    on_silence = sliced and ends_on_silence(url) and read_timeout is not None
    if on_silence:
        options = {**options, "timeout": str(round(read_timeout * 1e6))}  # type: ignore[operator]
    while True:
        if stop.is_set():
            raise SourceStopped(f"stopped while waiting for {url}")
        left = max(0.1, deadline - time.monotonic())
        attempt = left if on_silence or not sliced else OPEN_SLICE  # UDP: the deadline is only a backstop
        try:
            return open_input(url, options, format, timeout=(attempt, read_timeout))
        except MediaError as e:
            if sliced and isinstance(e.__context__, av.error.InvalidDataError):
                raise MediaError(not_a_stream(url)) from None
            if not _no_data(url, e.__context__):  # open_input raises "from None": the context stays
                raise
            if time.monotonic() >= deadline:
                raise NoData(url, open_timeout) from None


def datagrams_arrive(url: str, wait: float = 0.5) -> bool:
    """Whether datagrams reach the local port a ``udp://``/``rtp://`` source listens on (within ``wait``
    seconds): told apart, a sender of something FFmpeg cannot read from silence.  Unicast only."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").strip("@")
    try:
        if host and ipaddress.ip_address(host).is_multicast:
            return False
        port = parts.port
    except ValueError:  # a host name, or a malformed port: nothing to tell
        return False
    if not port:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        s.settimeout(wait)
        try:
            return bool(s.recv(1 << 16))
        except OSError:  # the timeout included
            return False


class LiveConnection:
    """The first video stream of one open input, decoded from its first decodable keyframe; with
    ``on_audio``, the packets of its first audio stream are handed to it as they are read."""

    def __init__(
        self,
        container: Any,
        url: str,
        wait_for_keyframe: bool = True,
        on_audio: Callable[[av.Packet], None] | None = None,
        deinterlace: Deinterlace = "off",
    ) -> None:
        self.container, self.url = container, url
        self.deinterlace = deinterlace
        self.deinterlacer: Deinterlacer | None = None  # set at the first frame when it deinterlaces
        if not container.streams.video:
            container.close()
            raise MediaError(f"{url} has no video stream")
        self.video = container.streams.video[0]
        self.video.thread_type = "AUTO"
        # Inter-coded streams joined mid-way decode from a keyframe; intra-only codecs and FFmpeg's
        # wrapped frames (lavfi, which flags no packet as a keyframe) decode from any packet.
        codec = self.video.codec_context.codec
        self.wait_for_keyframe = wait_for_keyframe and not codec.intra_only and codec.name != "wrapped_avframe"
        self.skipped = 0  # packets before the first decodable keyframe
        self.corrupt = 0  # packets the decoder rejected after that
        self.decoded = 0
        self.earliest: float | None = None  # the earliest video packet's time (s) before the first decoded frame
        self.end_reason: str | None = None
        self.audio = container.streams.audio[0] if on_audio is not None and container.streams.audio else None
        self.on_audio = on_audio

    def frames_before(self, frame: av.VideoFrame) -> int:
        """Frames the sender sent before ``frame`` (this connection's first decoded one) that never decoded:
        the span from the earliest packet read, lost packets included, at the stream's frame rate."""
        rate = self.average_rate
        if frame.time is None or self.earliest is None or not rate:
            return self.skipped
        return max(0, round((float(frame.time) - self.earliest) * rate))

    @property
    def average_rate(self) -> float | None:
        rate = self.video.average_rate or self.video.base_rate
        return float(rate) if rate else None

    def frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames, deinterlaced as ``deinterlace`` says (decided at the first one), until the input
        ends or stalls; ``end_reason`` then says which.  The deinterlacer's last frame comes out at the end."""
        for frame in self._decoded():
            if self.decoded == 1 and self.deinterlacer is None and wanted(self.deinterlace, frame):
                self.deinterlacer = Deinterlacer(self.video.time_base, every_frame=self.deinterlace == "on")
            if self.deinterlacer is None:
                yield frame
            else:
                yield from self.deinterlacer.push(frame)
        if self.deinterlacer is not None:
            yield from self.deinterlacer.push(None)

    def _decoded(self) -> Iterator[av.VideoFrame]:
        started = not self.wait_for_keyframe  # a keyframe was fed to the decoder
        packets = self.container.demux(*(s for s in (self.video, self.audio) if s is not None))
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                self.end_reason = "end of stream"
                return
            except av.error.FFmpegError as e:
                silent = _no_data(self.url, e)
                self.end_reason = f"no data for {self.container.read_timeout:g} s" if silent else e.strerror or str(e)
                return
            if packet.stream.type == "audio":
                if packet.size and self.on_audio is not None:  # with no pts too: the frames of a PES after its first
                    self.on_audio(packet)
                continue
            if not self.decoded and packet.pts is not None:
                t = float(packet.pts * packet.time_base)
                self.earliest = t if self.earliest is None else min(self.earliest, t)
            if packet.size and not started and not packet.is_keyframe:
                self.skipped += 1
                continue
            started = True
            try:
                frames = list(packet.decode())  # an empty packet flushes the decoder
            except av.error.FFmpegError:
                if self.decoded:
                    self.corrupt += 1
                else:  # that keyframe was not decodable after all: wait for the next one
                    self.skipped += 1
                    started = not self.wait_for_keyframe
                continue
            for frame in frames:
                self.decoded += 1
                yield frame

    def close(self) -> None:
        self.container.close()
