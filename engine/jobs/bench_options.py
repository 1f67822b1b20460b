"""What each ``bench`` is asked for: one frozen dataclass per kind (model, pipeline, stream, temporal), every
field declared once with its default and help (the command line's flags are generated from these).
Imports nothing heavy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cyclestream.engine.backends.options import Precision, RunOptions
from cyclestream.engine.jobs.options import RUN_HELP, StreamOptions
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.options import (
    DEVICE_HELP,
    OptionError,
    Options,
    comma_list,
    option,
    parse_size,
    progress_option,
    valid_device,
)
from cyclestream.engine.temporal import METHODS

NAMED_SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "480p": (854, 480), "4k": (3840, 2160)}
QUICK_SIZE = (64, 64)
STATS_LEVER = "ema-stats"  # measured by bench temporal only: instance-norm statistics averaged across frames (eager)


def parse_bench_size(text: str) -> tuple[int, int]:
    """'256' → (256, 256), '720p' → (1280, 720), '640x360' → (640, 360)."""
    text = text.strip().lower()
    if text in NAMED_SIZES:
        return NAMED_SIZES[text]
    if text.isdigit():
        text = f"{text}x{text}"
    elif "x" not in text:
        raise OptionError(f"expected a side such as 256, {', '.join(NAMED_SIZES)} or WIDTHxHEIGHT, got {text!r}")
    return parse_size(text)


def check_not_empty(options: Options, *names: str) -> None:
    """Each of the tuple fields ``names`` names at least one value."""
    for name in names:
        if getattr(options, name) == ():
            raise options.fail(name, "must name at least one value")


@dataclass(frozen=True, kw_only=True)
class ModelBenchOptions(Options):
    """``bench model``: images/s of the generator alone for every backend x precision x batch x size."""

    backends: tuple[str, ...] = option(("eager",), parse=comma_list(), metavar="NAME,...",
                                       help="backends to measure, e.g. eager,onnxruntime (one that cannot run here "
                                       "is reported as skipped)")
    precisions: tuple[Precision, ...] = option(("fp32", "bf16"), flag="--precision", parse=comma_list(),
                                               metavar="PRECISION,...", help="arithmetics to measure: fp32, bf16, fp16")
    batches: tuple[int, ...] = option((1,), flag="--batch", min=1, parse=comma_list(int), metavar="N,...",
                                      help="batch sizes to measure")
    sizes: tuple[tuple[int, int], ...] = option(((256, 256),), flag="--size", parse=comma_list(parse_bench_size),
                                                metavar="SIZE,...", help="frame sizes to measure: 256 (square), "
                                                f"{', '.join(NAMED_SIZES)} or WxH")
    device: str = option("cpu", help=DEVICE_HELP)
    warmup: int = option(1, min=0, flag="", help="untimed runs before each configuration's timed runs")
    repeats: int = option(3, min=1, help="timed runs per configuration (the median is reported)")
    min_time: float = option(1.0, above=0, help="seconds per timed run")
    quick: bool = option(False, help=f"a tiny model (without --model), {QUICK_SIZE[0]}x{QUICK_SIZE[1]} frames and "
                         "one short timed run: checks the harness in seconds")
    progress: bool = progress_option()

    def check(self) -> None:
        check_not_empty(self, "backends", "precisions", "batches", "sizes")
        if not valid_device(self.device):
            raise self.fail("device", f"expected {DEVICE_HELP}; got {self.device!r}")

    def measured(self) -> ModelBenchOptions:
        """The settings measured: with ``quick``, 64x64 frames and one short timed run instead of those given."""
        if not self.quick:
            return self
        return dataclasses.replace(self, sizes=(QUICK_SIZE,), repeats=1, min_time=0.05)


@dataclass(frozen=True, kw_only=True)
class PipelineBenchOptions(Options):
    """``bench pipeline``: decode, model and encode each alone, then overlapped."""

    run: RunOptions = option(default_factory=RunOptions, help=RUN_HELP)
    encode: EncodeOptions = option(default_factory=EncodeOptions, fields=(), help="video output")
    frames: int | None = option(None, min=1, default_text="all", help="use at most this many frames")
    progress: bool = progress_option()


SOAK = StreamOptions(source="lavfi:testsrc2=size=256x256:rate=30", duration=60.0,
                     stats_interval=0.0)


@dataclass(frozen=True, kw_only=True)
class StreamBenchOptions(Options):
    """``bench stream``: a live job soaked for a while (memory and open-file slopes, drops, latency), or with
    ``streams`` N copies of it through one shared model against N separate processes."""

    stream: StreamOptions = option(SOAK, fields=("run", "duration", "max_latency"), help="the live job")
    interval: float = option(1.0, above=0, help="seconds between memory samples")
    streams: tuple[int, ...] | None = option(None, min=1, parse=comma_list(int), metavar="N,...",
                                             help="instead of a soak, run N copies of --source through one shared "
                                             "model and as N separate processes, for --duration each, e.g. 1,2,4")

    def check(self) -> None:
        if self.stream.duration is None:
            raise self.fail("stream.duration", "a bench runs for a given number of seconds")
        check_not_empty(self, "streams")


@dataclass(frozen=True, kw_only=True)
class TemporalBenchOptions(Options):
    """``bench temporal``: flicker and cost of each --temporal method on a clip, with added noise."""

    run: RunOptions = option(default_factory=RunOptions, help=RUN_HELP)
    methods: tuple[str, ...] = option(("off", "blend", "flow"), choices=(*METHODS, STATS_LEVER), parse=comma_list(),
                                      metavar="METHOD,...", help=f"--temporal methods ({', '.join(METHODS)}; flow "
                                      f"needs OpenCV), plus {STATS_LEVER} (instance-norm statistics averaged across "
                                      "frames, measured here only)")
    noise: tuple[float, ...] = option((0.0, 3.0), min=0, parse=comma_list(float), metavar="SIGMA,...",
                                      help="added noise σ in levels")
    frames: int = option(60, min=1, help="frames per clip")
    progress: bool = progress_option()

    def check(self) -> None:
        check_not_empty(self, "methods", "noise")


@dataclass(frozen=True, kw_only=True)
class ServeBenchOptions(Options):
    """``bench serve URL``: a WebRTC client (engine/serve/probe.py) that sends a cycle of known frames to a
    running ``serve`` and measures what comes back: frames/s, round trip, PSNR to the model's own output."""

    size: tuple[int, int] = option((320, 240), parse=parse_size, metavar="WxH", help="the server's --size")
    seconds: float = option(10.0, above=0, help="how long each client sends")
    fps: float = option(30.0, above=0, help="frames sent per second")
    clients: int = option(1, min=1, max=64, help="browsers simulated at once")
    cycle: int = option(60, min=2, help="distinct frames sent in a cycle (60: two seconds at 30 fps, longer than "
                        "any round trip, so an answer is never matched to the wrong lap)")
    run: RunOptions = option(default_factory=lambda: RunOptions(backend="eager"), fields=("backend", "precision"),
                             help="how the expected output is computed")
