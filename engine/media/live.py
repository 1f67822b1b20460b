"""Live sources: cameras, network streams, FFmpeg test sources, and files played in real time.

A live source is read by one background thread from the moment it is created: the connection that
learns the frame size is the one that keeps being read, and frames that arrive while the backend is
prepared wait in a bounded buffer (the newest kept).  Each frame keeps its source timestamp, mapped
onto one continuous clock (time base 1/90000) that starts at the first frame; each connection is
anchored where its first frame arrives, so output timestamps stay monotonic and in wall-clock step
with the input across drops and reconnects.  Bursty sources (HLS, DASH, HTTP) are released at their
own timestamps, and a file played as fast as it decodes loses no frame.  A source that stalls (no
data for ``read_timeout`` seconds) or dies is reopened, with a back-off of at most ``BACK_OFF[1]`` s, for
up to ``reconnect_for`` seconds after it was lost (long enough for a camera or media server to
reboot); then the stream ends like a file does, and ``end_reason`` says why.  Each reconnection's gap
is kept as real time in the timestamps, or closed up (``close_gaps``), and listed in ``gaps``.
``stop()`` ends reading within a fraction of a second in every state (opening, reading, back-off):
the consumer never waits on a blocked read.
"""

from __future__ import annotations

import collections
import io
import logging
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from cyclestream.engine.channel import Channel, Stopped
from cyclestream.engine.errors import MediaError, PermanentMediaError
from cyclestream.engine.media.aac import config_from_adts, raw_frame
from cyclestream.engine.media.colour import ColourTags
from cyclestream.engine.media.deinterlace import Deinterlace
from cyclestream.engine.media.frame import VideoFrame
from cyclestream.engine.media.live_input import (
    LiveConnection,
    NoData,
    SourceStopped,
    datagrams_arrive,
    not_a_stream,
    open_live,
)
from cyclestream.engine.media.probe import VideoInfo

log = logging.getLogger("cyclestream")

LIVE_TIME_BASE = Fraction(1, 90000)
MIN_FRAME_TICKS = 90  # 1 ms in LIVE_TIME_BASE
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

    @property
    def scheme(self) -> str:
        """A network source's protocol (``udp``, ``http``...), lower case; "" for other kinds."""
        return self.url.split("://", 1)[0].lower() if self.kind == "network" else ""

    @property
    def open_in_slices(self) -> bool:
        """Whether opening means waiting for datagrams to arrive (UDP, RTP): then a silent open can be cut
        into short attempts and retried at no loss.  A handshake (RTSP, HTTP, RTMP, even a listening RTMP
        server) cut short fails instead, so those open in one attempt."""
        return self.scheme in ("udp", "rtp")

    @property
    def bursty(self) -> bool:
        """Whether the source arrives in bursts rather than at its frame rate: HLS, DASH and progressive
        HTTP fetch whole segments at once.  Such a source is paced by its own timestamps."""
        return self.scheme in ("http", "https")


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
        # A short probe that ends as soon as the codec is known (no frame-rate probing) and fits in one
        # open slice; no "nobuffer": the packets read while probing, the first keyframe among them, are kept.
        options = {"probesize": "200000", "analyzeduration": "250000", "fpsprobesize": "0"}
        if scheme == "udp":
            options |= {"overrun_nonfatal": "1", "fifo_size": "50000"}
        if scheme == "rtmp" and text.endswith("?listen"):  # be the RTMP server a sender publishes to
            return SourceSpec(text.removesuffix("?listen"), "network", None, options | {"listen": "1"})
        return SourceSpec(text, "network", None, options)
    if not Path(text).exists():
        raise MediaError(f"source not found: {text}")
    return SourceSpec(text, "file")


BUFFER_BYTES = 256 << 20  # frames waiting for the pipeline (while the backend is prepared): at most this much
BUFFER_FRAMES = (2, 120)  # ... and between this many frames
AUDIO_PACKETS = 4000  # audio waiting for its video to be written: at most this many packets (~80 s of AAC)
CONFIG_WAIT = 1.0  # seconds of video read while waiting for ADTS AAC's first packet (its config)
BACK_OFF = (0.25, 2.0)  # the first wait between reconnection attempts, doubled each time up to the second


class LiveSource:
    """Frames from a live (or real-time paced) source, stamped on one monotonic capture clock."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        realtime: bool = False,
        reconnect_for: float = 30.0,
        read_timeout: float = 3.0,
        open_timeout: float = 10.0,
        audio: bool = True,
        close_gaps: bool = False,
        deinterlace: Deinterlace = "off",
    ) -> None:
        self.spec, self.size, self.fps = spec, size, fps
        # Files (with --realtime), FFmpeg test sources and bursty network sources (HLS, DASH, HTTP) are
        # paced at their own timestamps; devices and other network streams pace themselves.
        self.paced = spec.kind == "lavfi" or (realtime and spec.kind == "file") or spec.bursty
        # A file played as fast as it decodes loses no frame: the pipeline waits for the model (the file
        # policy); everything else drops frames only when the model falls behind the source's own rate.
        self.every_frame = spec.kind == "file" and not realtime
        self.reconnect_for, self.read_timeout = reconnect_for, read_timeout
        self.gaps: list[float] = []  # seconds without frames at each reconnection
        self.close_gaps = close_gaps  # ... closed up in the timestamps, not kept as real time
        self.deinterlace = deinterlace
        self.deinterlaced: str | None = None  # how, once a connection's first frame asked for it
        self.open_timeout = max(open_timeout, read_timeout)
        self.end_reason: str | None = None
        self.captured = 0  # frames handed on (after --fps)
        self.fps_skipped = 0  # decoded frames --fps left out
        self.size_changes = 0
        self._last_size: tuple[int, int] | None = None  # the size the source sent last
        self.skipped = 0  # packets before a connection's first decodable keyframe
        self.lost_first = 0  # frames sent before each connection's first decoded one (skipped or lost)
        self.corrupt = 0  # packets the decoder rejected
        self.buffer_dropped = 0
        self.info: VideoInfo | None = None
        self.colour: ColourTags | None = None
        self.audio = audio
        # The source's audio, read with the video: ``audio_stream`` describes it (a copy of its codec
        # parameters, valid across reconnections), and its packets wait, on the output clock, until the
        # video they go with is written (``audio_until``).
        self.audio_stream: Any | None = None
        self._audio_holder: Any | None = None
        self._audio: collections.deque[tuple[int, av.Packet]] = collections.deque()
        self._early_audio: collections.deque[tuple[float, av.Packet]] = collections.deque()  # before its video
        self._audio_next: float | None = None  # where the next audio packet starts, if it has no pts
        self._raw_aac = False  # ADTS AAC is kept as raw frames (its config built from the first header)
        self._config_wait: float | None = None  # waiting for the audio's first packet (its config) until then
        self._capacity = BUFFER_FRAMES[1]  # the buffer's size in frames, once the first frame fixed it
        self.audio_read = 0
        self.audio_dropped = 0  # packets that waited too long (the buffer full) or changed codec
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._consuming = threading.Event()  # frames() was called: the pipeline is running
        self._buffer: Channel[VideoFrame] | None = None
        self._clock = _CaptureClock(fps, self.paced, self._stop, close_gaps=close_gaps)
        self._thread = threading.Thread(target=self._read, name="cyclestream-source", daemon=True)
        self._thread.start()

    @property
    def lost(self) -> int:
        """Frames the source sent that never decoded: gaps in its timestamps (lost or corrupt packets), and
        frames before each connection's first decodable keyframe (its own keyframe lost, or joined mid-GOP)."""
        return self._clock.lost + self.lost_first

    @property
    def sent(self) -> int:
        """Frames the source sent that arrived: lost + skipped by --fps + handed on."""
        return self.lost + self.fps_skipped + self.captured

    # ------------------------------------------------------------------ the consumer's side

    def wait_ready(self) -> VideoInfo:
        """Block until the first frame is decoded (its size is the stream's); MediaError if the source
        could not be read, SourceStopped if ``stop()`` came first."""
        while not self._ready.wait(0.05):
            if self._stop.is_set():
                raise SourceStopped(f"stopped before any frame arrived from {self.spec.url}")
            if not self._thread.is_alive() and not self._ready.is_set():
                reason = self.end_reason or "it is empty"
                url = self.spec.url
                raise MediaError(reason if url in reason else f"no frame came from {url} ({reason})")
        assert self.info is not None
        return self.info

    def frames(self) -> Iterator[VideoFrame]:
        """The frames, newest kept when the consumer falls behind; ends at end of stream or ``stop()``."""
        self.wait_ready()
        self._consuming.set()
        assert self._buffer is not None
        while True:
            try:
                frame = self._buffer.get()
            except Stopped:
                return
            if frame is None:
                return
            yield frame

    def audio_until(self, pts: int) -> list[tuple[int, av.Packet]]:
        """The audio packets (with their times on the output clock) up to ``pts``, oldest first."""
        out = []
        while self._audio and self._audio[0][0] <= pts:
            out.append(self._audio.popleft())
        return out

    def stop(self) -> None:
        """Stop reading and reconnecting; ``frames()`` ends within 0.1 s.  Safe from a signal handler."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self.stop()
        # The reader owns its connection and closes it itself: a read blocked on a silent input ends at
        # its read timeout (an open at its slice); the job does not wait for that.
        self._thread.join(timeout=0.1)

    # ------------------------------------------------------------------ the reader thread

    def _connect(self, back_off: float, lost_at: float | None) -> LiveConnection:
        """Connect, waiting for data up to open_timeout the first time, else a stall plus the back-off
        (never past ``reconnect_for``): listening through the back-off, not sleeping, so a sender that
        returns meanwhile is not missed."""
        wait = self.open_timeout
        if self._ready.is_set():
            left = self.reconnect_for - (time.monotonic() - lost_at) if lost_at is not None else self.reconnect_for
            wait = max(1.0, min(self.read_timeout + back_off, left))
        open_timeout, read_timeout = (wait, self.read_timeout) if self.spec.is_live else (None, None)
        spec = self.spec
        container = open_live(spec.url, spec.options, format=spec.format, stop=self._stop, open_timeout=open_timeout,
                              read_timeout=read_timeout, sliced=spec.open_in_slices)
        return LiveConnection(container, self.spec.url, wait_for_keyframe=self.spec.kind == "network",
                              on_audio=self._on_audio if self.audio else None, deinterlace=self.deinterlace)

    def _first_frame(self, frame: av.VideoFrame, connection: LiveConnection) -> None:
        self.size = self.size or (frame.width, frame.height)  # every later (re)connection keeps this size
        self.colour = ColourTags.of_frame(frame)  # read (and written) as the first frame says, as files are
        rate = self.fps or connection.average_rate or 30.0
        self.info = VideoInfo(
            width=self.size[0],
            height=self.size[1],
            codec=connection.video.codec_context.name,
            time_base=LIVE_TIME_BASE,
            average_rate=Fraction(rate).limit_denominator(1001),
            frames=0,
            duration=None,
            audio_streams=0,
            colour=self.colour,
        )
        if connection.audio is not None:
            self._hold_audio(connection.audio)
        if self.audio_stream is not None:
            ctx = self.audio_stream.codec_context
            if ctx.name == "aac" and not ctx.extradata:  # ADTS (MPEG-TS) has no config: its first header is one
                if self._early_audio:
                    self._configure_audio(bytes(self._early_audio[0][1]))
                else:  # ready once the first audio packet (or a second of video, or a full buffer) is read
                    self._config_wait = time.monotonic() + CONFIG_WAIT
        frame_bytes = 3 * self.size[0] * self.size[1]
        capacity = self._capacity = min(BUFFER_FRAMES[1], max(BUFFER_FRAMES[0], BUFFER_BYTES // frame_bytes))

        def dropped(_: object) -> None:
            self.buffer_dropped += 1

        # A file played as fast as it decodes waits for the consumer; everything live drops its oldest frame.
        self._buffer = Channel(capacity, self.spec.is_live or self.paced, self._stop, dropped)
        if self._config_wait is None:
            self._ready.set()

    def _hold_audio(self, stream: Any) -> None:
        """A copy of the audio stream's codec parameters, owned by a container that is never written (NUT
        takes every codec, G.711 included)."""
        self._audio_holder = av.open(io.BytesIO(), "w", format="nut")
        try:
            self.audio_stream = self._audio_holder.add_stream_from_template(stream)
        except (av.error.FFmpegError, ValueError) as e:
            log.warning("the audio of %s (%s) cannot be kept (%s): the recording has none", self.spec.url,
                        stream.codec_context.name, e)

    def _read(self) -> None:
        try:
            self._read_all()
        except SourceStopped:
            pass
        except Exception as e:  # never a traceback from the reader thread: the consumer reports end_reason
            self.end_reason = str(e) if isinstance(e, MediaError) else f"{type(e).__name__}: {e}"
            log.debug("source reader failed", exc_info=True)
        finally:
            if self._buffer is not None:
                self._buffer.close()
                self._ready.set()  # a stream that ended while its audio's config was awaited

    @property
    def _reads_ahead(self) -> bool:
        """Cameras and network streams run whether read or not: they are read (into the bounded buffer)
        while the backend is prepared.  Test sources and files are generated on demand: they wait."""
        return self.spec.kind in ("network", "v4l2") and not self.spec.bursty

    def _wait_for_consumer(self) -> bool:
        while not self._consuming.wait(0.1):
            if self._stop.is_set():
                return False
        return True

    def _note_size(self, frame: av.VideoFrame) -> None:
        """Frames are scaled to the first frame's size; each change of the source's size is named in one line."""
        assert self.size is not None
        got, previous = (frame.width, frame.height), self._last_size
        if previous is not None and got != previous:
            self.size_changes += 1
            log.warning(
                "source %s changed size mid-stream from %dx%d to %dx%d: scaled to %dx%d",
                self.spec.url,
                *previous,
                *got,
                *self.size,
            )
        self._last_size = got

    def _read_all(self) -> None:
        clock = self._clock
        attempt, back_off = 0, 0.0
        lost_at: float | None = None  # when the source was lost (monotonic); None while connected
        waited = False  # a source read on demand has waited for the consumer
        while not self._stop.is_set():
            t0 = time.monotonic()
            silent: NoData | None = None  # this attempt heard nothing FFmpeg could open
            try:
                connection = self._connect(back_off, lost_at)
            except PermanentMediaError as e:  # asking again cannot change it: end now, in one line
                self.end_reason = str(e)
                return
            except MediaError as e:
                self.end_reason = str(e)
                silent = e if isinstance(e, NoData) else None
                # A refused connection waits out the back-off; a listening one already spent it listening.
                if self._stop.wait(max(0.0, back_off - (time.monotonic() - t0))):
                    return
            else:
                clock.restart()
                first = True
                self.audio_dropped += len(self._early_audio)  # a connection that never showed a frame
                self._early_audio = collections.deque()
                try:
                    for av_frame in connection.frames():
                        if self._stop.is_set():
                            return
                        if self._buffer is None:
                            self._first_frame(av_frame, connection)
                        if not waited and self._config_wait is None and not self._reads_ahead:
                            if not self._wait_for_consumer():  # generated on demand: read when it is wanted
                                return
                            waited = True
                        if lost_at is not None:
                            self._reconnected(clock.since_last())
                        if first:  # this connection's first frame: what came before it never decoded
                            self.lost_first += connection.frames_before(av_frame)
                            self._note_deinterlacing(connection)
                            first = False
                        attempt, lost_at = 0, None
                        self._note_size(av_frame)
                        frame = clock.stamp(av_frame, self.size, self.captured, self.colour)  # type: ignore[arg-type]
                        if self._early_audio:
                            self._audio_clocked()
                        if self._config_wait is not None and (time.monotonic() > self._config_wait
                                                              or self.captured + 1 >= self._capacity):
                            self._audio_configured()  # no audio came with the video: the sink opens without
                        if frame is None:
                            self.fps_skipped += 1
                            continue
                        self.captured += 1
                        assert self._buffer is not None
                        self._buffer.put(frame)
                    self.end_reason = connection.end_reason or "end of stream"
                except Stopped:
                    return
                finally:
                    self.skipped += connection.skipped
                    self.corrupt += connection.corrupt
                    connection.close()
            if not self.spec.is_live:
                self.end_reason = None if self.end_reason == "end of stream" else self.end_reason
                return
            now = time.monotonic()
            if lost_at is None:
                lost_at = now
            left = self.reconnect_for - (now - lost_at)
            if self._stop.is_set() or left <= 0:
                if silent is not None and not self._stop.is_set():
                    self._name_unreadable_data(silent)
                if attempt:
                    self.end_reason = f"{self.end_reason}; gave up after reconnecting for {self.reconnect_for:g} s"
                return
            back_off = min(BACK_OFF[1], BACK_OFF[0] * 2**attempt, left)
            attempt += 1
            if attempt == 1:
                log.warning("source %s: %s; reconnecting for up to %g s", self.spec.url, self.end_reason,
                            self.reconnect_for)
            else:
                log.info("source %s: %s; still reconnecting (attempt %d, %.0f s left)", self.spec.url,
                         self.end_reason, attempt, left)

    def _on_audio(self, packet: av.Packet) -> None:
        """An audio packet as it is read, put on the output clock of the video read with it; packets read
        before the video's first frame (the decoder's delay) wait for it.  Packets after the codec
        changed are not kept."""
        if self.audio_stream is not None and packet.stream.codec_context.name != self.audio_stream.codec_context.name:
            self.audio_dropped += 1
            return
        t_src = self._audio_time(packet)
        if t_src is None:
            self.audio_dropped += 1
            return
        self.audio_read += 1
        if self._config_wait is not None and self.audio_stream is not None:
            self._configure_audio(bytes(packet))
            self._audio_configured()
        if self._clock.offset is None or self.audio_stream is None:
            self._keep_at_most(self._early_audio, (t_src, packet))
            return
        self._keep_audio(t_src, packet)

    def _audio_time(self, packet: av.Packet) -> float | None:
        """A packet's source time: its pts, or (MPEG-TS sends one per PES, the frames after the first have
        none) the time after the packet before it."""
        if packet.pts is not None:
            t_src = float(packet.pts * packet.time_base)
        elif self._audio_next is None:
            return None
        else:
            t_src = self._audio_next
        ctx = packet.stream.codec_context
        if packet.duration:
            length = float(packet.duration * packet.time_base)
        else:
            length = (ctx.frame_size or 1024) / ctx.sample_rate if ctx.sample_rate else 0.0
        self._audio_next = t_src + length
        return t_src

    def _configure_audio(self, first: bytes) -> None:
        """ADTS AAC: the config from its first header, and from now on frames without their headers."""
        assert self.audio_stream is not None
        config = config_from_adts(first)
        if config is not None:
            self.audio_stream.codec_context.extradata = config
            self._raw_aac = True

    def _keep_audio(self, t_src: float, packet: av.Packet) -> None:
        ticks = self._clock.output_ticks(t_src)
        assert ticks is not None
        if self._raw_aac:
            raw = raw_frame(bytes(packet))
            if raw is None:
                self.audio_dropped += 1
                return
            packet = av.Packet(raw)
            packet.is_keyframe = True
        self._keep_at_most(self._audio, (ticks, packet))

    def _keep_at_most(self, queue: collections.deque[Any], item: Any) -> None:
        """Append to an audio queue; past AUDIO_PACKETS its oldest packet is dropped (and counted)."""
        if len(queue) >= AUDIO_PACKETS:
            queue.popleft()
            self.audio_dropped += 1
        queue.append(item)

    def _audio_configured(self) -> None:
        self._config_wait = None
        self._ready.set()

    def _audio_clocked(self) -> None:
        """The video's first frame of this run is stamped: the audio read before it goes on its clock."""
        early, self._early_audio = self._early_audio, collections.deque()
        if self.audio_stream is None:
            self.audio_dropped += len(early)
            return
        for t_src, packet in early:
            self._keep_audio(t_src, packet)

    def _name_unreadable_data(self, silent: NoData) -> None:
        """Giving up on a silent UDP/RTP source: if datagrams do arrive, say that they are not a stream.
        (Asked only now: listening on the port meanwhile would take a returning sender's first packets.)"""
        if self.spec.open_in_slices and datagrams_arrive(self.spec.url):
            self.end_reason = not_a_stream(self.spec.url, silent.seconds)

    def _note_deinterlacing(self, connection: LiveConnection) -> None:
        if connection.deinterlacer is not None and self.deinterlaced is None:
            self.deinterlaced = connection.deinterlacer.describe()
            log.info("source %s is interlaced: deinterlaced with %s before the model", self.spec.url,
                     self.deinterlaced)

    def _reconnected(self, gap: float) -> None:
        self.gaps.append(round(gap, 3))
        kept = "closed up in (the next frame follows the last)" if self.close_gaps else "kept as real time in"
        log.warning("source %s is back after %.1f s without frames: the gap is %s the output's timestamps",
                    self.spec.url, gap, kept)


JUMP_SECONDS = 10.0  # source time that steps back, or forward by more than this, starts a new run of time


class _CaptureClock:
    """Turns decoded frames into VideoFrames on one continuous output clock.

    Each frame's time is its source timestamp (PTS), mapped onto the output clock: the first frame is 0,
    and each run of continuous source time (a connection; a timestamp jump) is anchored where its first
    frame arrives, so a reconnection's gap is kept as real time (or, with ``close_gaps``, right after the
    last frame, one usual step on).  The moment a read returned never stamps a frame (only a frame with
    no timestamp at all).  Paced sources (test sources, real-time
    files, bursty network sources) are released at their own timestamps; a late frame shifts the pacing
    rather than releasing a burst.  ``--fps`` keeps at most ``fps`` frames per second of source time.
    Frames missing between two decoded ones (a timestamp step that spans several usual steps) are ``lost``.
    """

    def __init__(
        self, fps: float | None, paced: bool, stop: threading.Event | None = None, *, close_gaps: bool = False
    ) -> None:
        self.fps, self.paced, self.close_gaps = fps, paced, close_gaps
        self.stop = stop or threading.Event()
        self.origin: float | None = None  # perf_counter of the first frame: output time 0
        self.last_pts = -1
        self.lost = 0
        self.closed = 0.0  # seconds of gaps closed up: the output clock is this much behind real time
        self.steps: collections.deque[float] = collections.deque(maxlen=31)  # recent source-time steps (s)
        self.restart()

    def restart(self) -> None:
        """A new connection (or a timestamp jump): its source time is anchored afresh."""
        self.offset: float | None = None  # output seconds = source seconds + offset
        self.release: float | None = None  # pacing: a frame is due at source seconds + release (perf_counter)
        self.last_src: float | None = None
        self.next_due = 0.0

    def since_last(self) -> float:
        """Seconds from the last frame's time on the output clock to now: a gap measured by the frames' own
        times, not by when they were read (a stalled demuxer hands its last frame over only at the stall)."""
        if self.origin is None or self.last_pts < 0:
            return 0.0
        return time.perf_counter() - self.origin - self.closed - float(self.last_pts * LIVE_TIME_BASE)

    def output_ticks(self, t_src: float) -> int | None:
        """Source time on the output clock (LIVE_TIME_BASE ticks); None before this run's first frame."""
        return None if self.offset is None else round((t_src + self.offset) / LIVE_TIME_BASE)

    def _count_gap(self, step: float) -> None:
        """A step well over the usual one (the median of the recent steps) means frames were lost."""
        if step <= 0:
            return
        usual = statistics.median(self.steps) if len(self.steps) >= 3 else None
        self.steps.append(step)
        if usual and step > 1.5 * usual:
            self.lost += round(step / usual) - 1

    def stamp(
        self, av_frame: av.VideoFrame, size: tuple[int, int], index: int, colour: ColourTags
    ) -> VideoFrame | None:
        """The frame on the output clock, or None when ``--fps`` skips it."""
        t_src = float(av_frame.time) if av_frame.time is not None else time.perf_counter()
        if self.last_src is not None:
            step = t_src - self.last_src
            if step < -1e-3 or step > JUMP_SECONDS:
                self.restart()
            else:
                self._count_gap(step)
        self.last_src = t_src
        if self.fps:  # --fps: keep at most fps frames per second of source time
            if t_src + 1e-6 < self.next_due:
                return None
            self.next_due = max(self.next_due + 1 / self.fps, t_src)
        if self.paced:
            if self.release is None:
                self.release = time.perf_counter() - t_src
            delay = t_src + self.release - time.perf_counter()
            if delay > 0:
                self.stop.wait(delay)
            else:
                self.release -= delay  # late: pace the next frames from this one, never a burst
        image = colour.to_rgb(av_frame, *size)
        now = time.perf_counter()
        if self.origin is None:
            self.origin = now
        if self.offset is None:  # a new run of source time: anchored where it arrives, or right after the last
            self.offset = (now - self.origin - self.closed) - t_src
            if self.close_gaps and self.last_pts >= 0:
                step = statistics.median(self.steps) if self.steps else 1 / (self.fps or 30)
                closed_up = (t_src + self.offset) - (float(self.last_pts * LIVE_TIME_BASE) + step)
                self.offset -= closed_up
                self.closed += closed_up
        # At least 1 ms apart: containers with millisecond timestamps (Matroska, FLV) stay increasing too.
        pts = max(self.last_pts + MIN_FRAME_TICKS, round((t_src + self.offset) / LIVE_TIME_BASE))
        self.last_pts = pts
        return VideoFrame(image=image, pts=pts, time_base=LIVE_TIME_BASE, index=index, captured_at=now)
