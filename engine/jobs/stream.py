"""The live job: a camera, network stream or test source in; a translated stream, file or preview out.

Top to bottom: load the model → connect to the source and keep reading it (its first frame fixes the
size; frames that arrive meanwhile wait in a bounded buffer) → prepare the backend for
``--batch-size`` → open the sink(s) → run the pipeline with the *live* policy (at most one batch
queued, oldest dropped, so the model always works on the newest frames) → on Ctrl-C/SIGTERM, a dead
source or ``--duration``, finish: stop reading, drain, finish the output, print a summary.

A recording (a file sink) is written under its final name in a format that stays playable up to the
last second if the job is killed: MPEG-TS, Matroska with a cluster a second, or fragmented MP4.
The first Ctrl-C (or SIGTERM) stops reading and reconnecting at once and finishes the output; a
second Ctrl-C stops without flushing the encoder but keeps what was recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends.base import Backend
from cyclestream.engine.backends.options import prepare_backend
from cyclestream.engine.backends.shared import SharedBackend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import CycleStreamError, first_line
from cyclestream.engine.jobs.live_target import follow_stdin
from cyclestream.engine.jobs.options import StreamOptions
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.live import LIVE_TIME_BASE, LiveSource, parse_source
from cyclestream.engine.media.live_input import SourceStopped
from cyclestream.engine.media.live_output import NullSink, open_live_sink, recording_options
from cyclestream.engine.media.preview_server import PreviewServer, parse_listen
from cyclestream.engine.media.probe import VideoInfo
from cyclestream.engine.media.sinks import VideoFileSink, check_video_codec
from cyclestream.engine.pipeline import FILE_POLICY, LIVE_POLICY, Pipeline
from cyclestream.engine.stats import PipelineStats
from cyclestream.engine.temporal import make_stabiliser

log = logging.getLogger("cyclestream")

@dataclass
class StreamReport:
    source: str
    sink: str
    frames_in: int
    stats: PipelineStats
    end_reason: str | None
    late: int
    max_latency: float
    skipped_packets: int = 0  # before the first decodable keyframe (of each connection)
    corrupt_packets: int = 0  # rejected by the decoder
    lost: int = 0  # frames the source sent that never decoded (timestamp gaps, frames before a keyframe)
    fps_skipped: int = 0  # decoded frames --fps left out
    sink_lost: bool = False  # the sink failed mid-stream: ``end_reason`` says how
    gaps: tuple[float, ...] = ()  # seconds without frames at each reconnection
    gap_policy: str = "real-time"  # --reconnect-gap: how the gaps are kept in the timestamps
    audio: dict[str, Any] | None = None  # the source's audio: its codec and what was copied

    def summary(self) -> dict[str, Any]:
        """The counts add up: frames_sent = lost_before_decode + dropped + frames_out."""
        s = self.stats.summary()
        wall = max(self.stats.wall, 1e-9)
        return {
            "source": self.source,
            "sink": self.sink,
            "frames_sent": self.lost + self.fps_skipped + self.frames_in,
            "lost_before_decode": self.lost,
            "frames_in": self.frames_in,
            "frames_out": s["frames"],
            "dropped": self.fps_skipped + self.frames_in - s["frames"],
            "input_fps": round(self.frames_in / wall, 2),
            "output_fps": s["fps"],
            "latency_ms": s["latency_ms"],
            "late_frames": self.late,
            "skipped_packets": self.skipped_packets,
            "corrupt_packets": self.corrupt_packets,
            "max_latency_ms": round(self.max_latency * 1000),
            "stages": s["stages"],
            "wall_s": s["wall_s"],
            "audio": self.audio,
            "reconnects": len(self.gaps),
            "reconnect_gaps_s": list(self.gaps),
            "reconnect_gap": self.gap_policy,  # each gap kept as real time in the timestamps, or closed up
            "end_reason": self.end_reason,
        }


class _StatsPrinter:
    """A refreshing statistics line on stderr (a new line each time when stderr is not a terminal)."""

    def __init__(self, pipeline: Pipeline, source: LiveSource, interval: float, label: str = "") -> None:
        self.pipeline, self.source, self.interval, self.label = pipeline, source, interval, label
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cyclestream-stats", daemon=True)
        if interval > 0:
            self._thread.start()

    def line(self) -> str:
        st = self.pipeline.stats
        wall = max(st.wall, 1e-9)
        stages = " ".join(f"{s.name} {1000 * s.busy / max(1, s.items):.0f}ms" for s in list(st.stages.values()))
        p = [st.latency_ms(q, recent=200) for q in (50, 95, 99)]
        return (
            f"{self.label}in {self.source.captured / wall:5.1f} fps | out {st.frames / wall:5.1f} fps | "
            f"lost {self.source.lost} | dropped {self.dropped()} | latency p50 {p[0]:.0f} p95 {p[1]:.0f} "
            f"p99 {p[2]:.0f} ms | {stages}"
        )

    def dropped(self) -> int:
        """Frames dropped by the policy so far: by --fps, the source's buffer and the pipeline's queues."""
        return self.source.fps_skipped + self.source.buffer_dropped + self.pipeline.stats.dropped

    def _loop(self) -> None:
        tty = sys.stderr.isatty() and not self.label  # several streams: a line each, never redrawn
        while not self._done.wait(self.interval):
            print(("\r" if tty else "") + self.line(), end="" if tty else "\n", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
            if sys.stderr.isatty() and not self.label:
                print(file=sys.stderr)


class _SinkLost(Exception):
    """The sink failed mid-stream: the job ends with its report (and the sink keeps what was written)."""


class StreamInterrupted(CycleStreamError):
    """Ctrl-C or SIGTERM came before any frame was translated: nothing was recorded."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM


HARD_EXIT_AFTER = 1.0  # seconds after a second Ctrl-C


def _hard_exit(code: int) -> None:
    time.sleep(HARD_EXIT_AFTER)
    sys.stderr.write("cyclestream: stopped at once; recordings keep what was written\n")
    sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def _graceful_stop(finish: Callable[[], None]) -> Iterator[list[int]]:
    """First Ctrl-C, SIGTERM or SIGHUP: ``finish()`` (stop reading, drain, finish the output).  A second Ctrl-C
    raises KeyboardInterrupt.  Yields the list of signals received so far."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1 and signum == signal.SIGINT:
            # Recordings are crash-safe, so if unwinding hangs in a library's teardown, a hard exit
            # HARD_EXIT_AFTER seconds later loses nothing that was written.
            threading.Thread(target=_hard_exit, args=(128 + signum,), name="cyclestream-exit", daemon=True).start()
            raise KeyboardInterrupt
        if len(received) == 1:
            log.info("stopping: finishing the output (Ctrl-C again to stop at once)")
        finish()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _check_model_time(backend: Any, width: int, height: int, batch: int, max_latency: float) -> None:
    """Warn when one steady call already exceeds the latency bound (the first, warm-up, call is not timed)."""
    backend.run(torch.zeros((batch, height, width, 3), dtype=torch.uint8))
    t0 = time.perf_counter()
    backend.run(torch.zeros((batch, height, width, 3), dtype=torch.uint8))
    model_time = time.perf_counter() - t0
    if model_time > max_latency:
        log.warning(
            "one call of %d frames takes %.0f ms on %s at %dx%d, more than --max-latency %.0f ms: latency "
            "will exceed the bound (choose a smaller --size or --batch-size, or a faster backend)",
            batch,
            model_time * 1000,
            backend.describe(),
            width,
            height,
            max_latency * 1000,
        )


def _check_options(options: StreamOptions) -> None:
    if options.model is None:
        raise CycleStreamError("stream needs --model")
    if options.sink != "null":
        check_video_codec(options.encode.codec)
        if "://" not in options.sink:
            recording_options(Path(options.sink), options.encode)  # a bad name fails before connecting


def connect_source(options: StreamOptions) -> tuple[LiveSource, bool]:
    """The source, reading in the background from now on, and whether it is a network source."""
    spec = parse_source(options.source, options.run.size, options.fps, options.input_format)
    source = LiveSource(
        spec, size=options.run.size, fps=options.fps, realtime=options.realtime,
        reconnect_for=options.reconnect_for, read_timeout=options.read_timeout,
        audio=options.audio and options.sink != "null",  # audio goes nowhere else: a null sink reads none
        close_gaps=options.reconnect_gap == "closed", deinterlace=options.deinterlace,
    )
    return source, spec.kind == "network"


def _wait_ready(source: LiveSource, network: bool, label: str, signals: list[int]) -> VideoInfo:
    if network:
        log.info("waiting for %s (Ctrl-C to stop)", label)
    try:
        return source.wait_ready()
    except SourceStopped as e:
        raise StreamInterrupted(f"{e}; nothing was recorded", signals[0] if signals else 2) from None


def _check_not_stopped(signals: list[int]) -> None:
    """Ctrl-C while the backend was prepared: stop before recording anything."""
    if signals:
        raise StreamInterrupted("stopped while the model was being prepared; nothing was recorded", signals[0])


def _run_job(
    options: StreamOptions,
    source: LiveSource,
    info: VideoInfo,
    backend: Backend,
    on_ready: Callable[[PreviewServer | None], None] | None = None,
    label: str = "",
) -> StreamReport:
    """One live stream through a prepared backend: sink, preview, statistics line, pipeline; its report."""
    pipeline = Pipeline(backend, options.run.batch_size, FILE_POLICY if source.every_frame else LIVE_POLICY)
    stabilise = make_stabiliser(options.temporal)  # one per stream: it keeps the stream's past
    preview = PreviewServer(*parse_listen(options.preview)) if options.preview else None
    late = 0
    origin: int | None = None  # the first written frame's time: every recording starts near 0
    audio = _AudioCopy(source)
    sink_error: list[str] = []
    timer = threading.Timer(options.duration, source.stop) if options.duration else None
    try:
        with open_live_sink(options.sink, info, options.encode, audio=source.audio_stream) as sink:
            audio.sink = sink

            def write(frame: TranslatedFrame) -> None:
                nonlocal late, origin
                if stabilise is not None:
                    frame = TranslatedFrame(stabilise(frame.source.image, frame.image), frame.source)
                if origin is None:
                    origin = audio.origin = frame.source.pts or 0
                source_frame = dataclasses.replace(frame.source, pts=(frame.source.pts or 0) - origin)
                frame = TranslatedFrame(frame.image, source_frame)
                try:
                    audio.write_until(frame.source.pts or 0)  # the audio up to this frame, then the frame
                    sink.write(frame)
                except CycleStreamError:
                    raise
                except Exception as e:  # a network sink that went away, a full disk: end with a summary
                    sink_error.append(f"sink {options.sink} lost: {e}")
                    source.stop()
                    raise _SinkLost(sink_error[0]) from None
                if preview is not None:
                    preview.offer(frame)
                if time.perf_counter() - frame.source.captured_at > options.max_latency:
                    late += 1

            if preview is not None:
                log.info("live preview at %s", preview.url)
            if on_ready is not None:
                on_ready(preview)
            printer = _StatsPrinter(pipeline, source, options.stats_interval, label)
            if timer is not None:
                timer.start()
            try:
                stats = pipeline.run(source.frames(), write)
                audio.finish()
            finally:
                printer.stop()
    except _SinkLost:
        stats = pipeline.stats
        stats.finished = stats.finished or time.perf_counter()
    finally:
        if timer is not None:
            timer.cancel()
        if preview is not None:
            preview.close()
    if source.skipped or source.corrupt:
        log.info(
            "source %s: %d packets skipped before a keyframe, %d corrupt packets skipped",
            options.source,
            source.skipped,
            source.corrupt,
        )
    if stats.frames == 0 and not sink_error:
        raise CycleStreamError(f"no frame came through from {options.source} ({source.end_reason or 'stopped'})")
    return StreamReport(
        options.source,
        options.sink,
        source.captured,
        stats,
        sink_error[0] if sink_error else source.end_reason,
        late,
        options.max_latency,
        source.skipped,
        source.corrupt,
        source.lost,
        source.fps_skipped,
        bool(sink_error),
        tuple(source.gaps),
        options.reconnect_gap,
        audio.report(),
    )


class _AudioCopy:
    """A live source's audio into the sink, on the translated video's clock: packets are written up to
    each video frame's time as that frame is written, so the audio keeps the video's delay."""

    TAIL = 9000  # at the end, audio up to 0.1 s past the last frame

    def __init__(self, source: LiveSource) -> None:
        self.source = source
        self.sink: NullSink | VideoFileSink | None = None
        self.origin: int | None = None  # the first written frame's time, taken off every packet
        self.written = self.late = 0
        self._last = -1  # the last audio packet written
        self._video = -1  # the last video frame's time

    def write_until(self, pts: int) -> None:
        self._video = max(self._video, pts)
        template = self.source.audio_stream
        if template is None or self.sink is None or self.origin is None:
            return
        for ticks, packet in self.source.audio_until(pts + self.origin):
            out = ticks - self.origin
            if out < 0 or out <= self._last:  # before the recording began, or out of order
                self.late += 1
                continue
            try:
                self.sink.write_packet(template, packet, out, LIVE_TIME_BASE)
            except Exception as e:  # the muxer refused the audio: the video goes on without it, named once
                log.warning("the audio of %s cannot be written (%s): the rest of the recording has none",
                            self.source.spec.url, first_line(e))
                self.source.audio_stream = None
                return
            self._last = out
            self.written += 1

    def finish(self) -> None:
        if self._video >= 0:
            self.write_until(self._video + self.TAIL)

    def report(self) -> dict[str, Any] | None:
        template = self.source.audio_stream
        if template is None:
            return None
        written = self.sink.written_as(template) if self.sink is not None else None
        return {"codec": template.codec_context.name, "copied": written == "copied",
                "encoded_as": None if written == "copied" else written, "packets_read": self.source.audio_read,
                "packets_written": self.written, "packets_dropped": self.source.audio_dropped + self.late}


def run_stream(options: StreamOptions, on_ready: Callable[[PreviewServer | None], None] | None = None) -> StreamReport:
    """Run a live job until the source ends, ``duration`` passes, or Ctrl-C/SIGTERM; returns its report."""
    _check_options(options)
    model = load_model(options.model)  # type: ignore[arg-type]
    source, network = connect_source(options)
    backend = None
    try:
        with _graceful_stop(source.stop) as signals:
            info = _wait_ready(source, network, options.source, signals)
            backend = prepare_backend(model, options.run, info.height, info.width)
            follow_stdin(model, backend)  # StarGAN/BicycleGAN: a line on stdin switches the target / z
            _check_model_time(backend, info.width, info.height, options.run.batch_size, options.max_latency)
            _check_not_stopped(signals)
            return _run_job(options, source, info, backend, on_ready)
    finally:
        source.close()
        if backend is not None:
            backend.close()


def run_streams(jobs: list[StreamOptions]) -> list[StreamReport]:
    """Several live streams through one prepared backend (the model and run options of the first): the
    newest frame of each stream is batched into one model call; each stream keeps its own clock, drop
    policy, reconnects, sink and statistics line.  Returns a report per stream, in order."""
    if len(jobs) == 1:
        return [run_stream(jobs[0])]
    for job in jobs:
        _check_options(job)
    first = jobs[0]
    model = load_model(first.model)  # type: ignore[arg-type]
    connected = [connect_source(job) for job in jobs]
    sources = [source for source, _ in connected]
    backend = None
    shared: SharedBackend | None = None
    results: list[StreamReport | BaseException | None] = [None] * len(jobs)

    def stop_all() -> None:
        for source in sources:
            source.stop()

    try:
        with _graceful_stop(stop_all) as signals:
            infos = [_wait_ready(s, net, job.source, signals) for (s, net), job in zip(connected, jobs, strict=True)]
            sizes = {(i.width, i.height) for i in infos}
            if len(sizes) > 1:
                listed = ", ".join(f"{j.source} {i.width}x{i.height}" for j, i in zip(jobs, infos, strict=True))
                raise CycleStreamError(f"the streams differ in size ({listed}): pass --size WxH to share one model")
            width, height = sizes.pop()
            batch = len(jobs) * first.run.batch_size
            backend = prepare_backend(model, dataclasses.replace(first.run, batch_size=batch), height, width)
            _check_model_time(backend, width, height, batch, first.max_latency)
            _check_not_stopped(signals)
            shared = SharedBackend(backend, len(jobs))
            clients = [shared.client() for _ in jobs]

            def serve(k: int) -> None:
                try:
                    results[k] = _run_job(jobs[k], sources[k], infos[k], clients[k], label=f"[{k + 1}] ")
                except BaseException as e:
                    results[k] = e

            threads = [threading.Thread(target=serve, args=(k,), name=f"stream-{k + 1}") for k in range(len(jobs))]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):  # the main thread stays free for Ctrl-C
                for t in threads:
                    t.join(0.1)
    finally:
        stop_all()
        if shared is not None:
            shared.close()
            if shared.calls:
                log.info("one model for %d streams: %d frames in %d calls (%.2f frames a call)", len(jobs),
                         shared.frames, shared.calls, shared.frames / shared.calls)
        for source in sources:
            source.close()
        if backend is not None:
            backend.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return [r for r in results if isinstance(r, StreamReport)]


def print_summary(report: StreamReport | list[StreamReport], path: Path | None = None) -> None:
    """The JSON summary on stdout (and in ``path``): one object, or a list of them for several streams."""
    data = report.summary() if isinstance(report, StreamReport) else [r.summary() for r in report]
    text = json.dumps(data, indent=2)
    if path is not None:
        with atomic_output(path) as tmp:
            tmp.write_text(text + "\n")
    print(text)
