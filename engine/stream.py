"""The live job: a camera, network stream or test source in; a translated stream, file or preview out.

Top to bottom: load the model → open the source (its first frame fixes the size) → prepare the
backend → open the sink(s) → run the pipeline with the *live* policy (one queued input, oldest
dropped, so the model always works on the newest frame) → on Ctrl-C/SIGTERM, a dead source or
``--duration``, finish: drain, finalize the output (a file is renamed into place), print a summary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.live import LiveSource, parse_source
from cyclestream.engine.media.preview_server import PreviewServer, parse_listen
from cyclestream.engine.media.sinks import EncodeOptions, VideoFileSink, check_video_codec
from cyclestream.engine.pipeline import LIVE_POLICY, Pipeline
from cyclestream.engine.stats import PipelineStats
from cyclestream.engine.translate import RunOptions, prepare_backend

log = logging.getLogger("cyclestream")

LIVE_ENCODE = EncodeOptions(codec="libx264", crf=23, preset="veryfast", tune="zerolatency")
_SINK_FORMATS = {
    "udp": "mpegts",
    "srt": "mpegts",
    "tcp": "mpegts",
    "rtp": "rtp_mpegts",
    "rtmp": "flv",
    "rtmps": "flv",
    "rtsp": "rtsp",
}


@dataclass(frozen=True)
class StreamOptions:
    source: str
    sink: str = "null"
    model: Path | None = None
    run: RunOptions = field(default_factory=RunOptions)
    encode: EncodeOptions = LIVE_ENCODE
    fps: float | None = None
    realtime: bool = False
    max_latency: float = 1.0  # seconds, capture → written
    reconnect: int = 3
    read_timeout: float = 3.0
    preview: str | None = None  # "[HOST]:PORT" for the MJPEG page
    input_format: str | None = None  # camera pixel format (v4l2 input_format: mjpeg, yuyv422, ...)
    duration: float | None = None  # stop after this many seconds
    stats_interval: float = 1.0  # seconds between live statistics lines; 0: none


@dataclass
class StreamReport:
    source: str
    sink: str
    frames_in: int
    stats: PipelineStats
    end_reason: str | None
    late: int
    max_latency: float

    def summary(self) -> dict[str, Any]:
        s = self.stats.summary()
        wall = max(self.stats.wall, 1e-9)
        return {
            "source": self.source,
            "sink": self.sink,
            "frames_in": self.frames_in,
            "frames_out": s["frames"],
            "dropped": self.frames_in - s["frames"],
            "input_fps": round(self.frames_in / wall, 2),
            "output_fps": s["fps"],
            "latency_ms": s["latency_ms"],
            "late_frames": self.late,
            "max_latency_ms": round(self.max_latency * 1000),
            "stages": s["stages"],
            "wall_s": s["wall_s"],
            "end_reason": self.end_reason,
        }


class _NullSink:
    def write(self, frame: TranslatedFrame) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


@contextlib.contextmanager
def _open_sink(target: str, source: LiveSource, encode: EncodeOptions) -> Iterator[Any]:
    """The sink for ``--sink``: null, a network URL, or a file written atomically (renamed on finish)."""
    if target == "null":
        yield _NullSink()
        return
    rate = float(source.info.average_rate or 30)
    encode = EncodeOptions(**{**encode.__dict__, "gop": encode.gop or max(1, round(2 * rate))})
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme:
        fmt = encode.container_format or _SINK_FORMATS.get(scheme)
        if fmt is None:
            raise CycleStreamError(f"unsupported sink scheme {scheme}:// (udp, srt, tcp, rtp, rtmp, rtsp)")
        sink = VideoFileSink(target, source.info, [], EncodeOptions(**{**encode.__dict__, "container_format": fmt}))
        try:
            yield sink
        finally:
            sink.close()
        return
    with atomic_output(Path(target)) as tmp:
        sink = VideoFileSink(tmp, source.info, [], encode, Path(target).name)
        try:
            yield sink
        except BaseException:
            sink.abort()
            raise
        sink.close()  # finish the file; atomic_output then renames it into place


class _StatsPrinter:
    """A refreshing statistics line on stderr (a new line each time when stderr is not a terminal)."""

    def __init__(self, pipeline: Pipeline, source: LiveSource, interval: float) -> None:
        self.pipeline, self.source, self.interval = pipeline, source, interval
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
            f"in {self.source.captured / wall:5.1f} fps | out {st.frames / wall:5.1f} fps | "
            f"dropped {self.source.captured - st.frames} | latency p50 {p[0]:.0f} p95 {p[1]:.0f} "
            f"p99 {p[2]:.0f} ms | {stages}"
        )

    def _loop(self) -> None:
        tty = sys.stderr.isatty()
        while not self._done.wait(self.interval):
            print(("\r" if tty else "") + self.line(), end="" if tty else "\n", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
            if sys.stderr.isatty():
                print(file=sys.stderr)


@contextlib.contextmanager
def _graceful_stop(finish: Callable[[], None]) -> Iterator[None]:
    """First Ctrl-C or SIGTERM: finish cleanly (drain, finalize output).  A second Ctrl-C aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    calls = 0

    def handler(signum: int, _frame: object) -> None:
        nonlocal calls
        calls += 1
        if calls > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("stopping: finishing the output (Ctrl-C again to abort)")
        finish()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_stream(options: StreamOptions, on_ready: Callable[[PreviewServer | None], None] | None = None) -> StreamReport:
    """Run a live job until the source ends, ``duration`` passes, or Ctrl-C/SIGTERM; returns its report."""
    if options.model is None:
        raise CycleStreamError("stream needs --model")
    if options.sink != "null":
        check_video_codec(options.encode.codec)
    model = load_model(options.model)
    spec = parse_source(options.source, options.run.size, options.fps, options.input_format)
    source = LiveSource(spec, options.run.size, options.fps, options.realtime, options.reconnect, options.read_timeout)
    width, height = source.size
    backend = prepare_backend(model, options.run, height, width)
    t0 = time.perf_counter()
    backend.run(torch.zeros((1, height, width, 3), dtype=torch.uint8))
    model_time = time.perf_counter() - t0
    if model_time > options.max_latency:
        log.warning(
            "one frame takes %.0f ms on %s at %dx%d, more than --max-latency %.0f ms: latency will "
            "exceed the bound (choose a smaller --size or a faster backend)",
            model_time * 1000,
            backend.describe(),
            width,
            height,
            options.max_latency * 1000,
        )
    pipeline = Pipeline(backend, 1, LIVE_POLICY)
    preview = PreviewServer(*parse_listen(options.preview)) if options.preview else None
    late = 0
    timer = threading.Timer(options.duration, pipeline.finish) if options.duration else None
    try:
        with _open_sink(options.sink, source, options.encode) as sink, _graceful_stop(pipeline.finish):

            def write(frame: TranslatedFrame) -> None:
                nonlocal late
                sink.write(frame)
                if preview is not None:
                    preview.offer(frame)
                if time.perf_counter() - frame.source.captured_at > options.max_latency:
                    late += 1

            if preview is not None:
                log.info("live preview at %s", preview.url)
            if on_ready is not None:
                on_ready(preview)
            printer = _StatsPrinter(pipeline, source, options.stats_interval)
            if timer is not None:
                timer.start()
            try:
                stats = pipeline.run(source.frames(), write)
            finally:
                printer.stop()
    finally:
        if timer is not None:
            timer.cancel()
        if preview is not None:
            preview.close()
        source.close()
        backend.close()
    if stats.frames == 0:
        raise CycleStreamError(f"no frame came through from {options.source} ({source.end_reason or 'stopped'})")
    return StreamReport(
        options.source, options.sink, source.captured, stats, source.end_reason, late, options.max_latency
    )


def print_summary(report: StreamReport, path: Path | None = None) -> None:
    text = json.dumps(report.summary(), indent=2)
    if path is not None:
        with atomic_output(path) as tmp:
            tmp.write_text(text + "\n")
    print(text)
