"""What each model-running job is asked for: one frozen dataclass per job, every field declared once with
its default and help (the command line's flags are generated from these).  Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cyclestream.engine.backends.options import RunOptions
from cyclestream.engine.media.deinterlace import Deinterlace
from cyclestream.engine.media.encode_options import LIVE_ENCODE, EncodeOptions
from cyclestream.engine.options import Options, option, progress_option
from cyclestream.engine.temporal import METHODS

TEMPORAL_HELP = ("steady video: on (= blend: a motion-aware running average where the input is still, reset at "
                 "scene cuts), flow (the same along optical flow; needs OpenCV), off (every frame on its own)")
RUN_HELP = "model execution"
ENCODE_HELP = "video output"
ReconnectGap = Literal["real-time", "closed"]


def temporal_option() -> Any:
    return option("on", choices=METHODS, help=TEMPORAL_HELP)


DEINTERLACE_HELP = ("interlaced video: auto deinterlaces (FFmpeg's bwdif, one frame per frame) when the first "
                    "frame is flagged interlaced, on deinterlaces every frame whatever its flags, off hands woven "
                    "fields to the model")


@dataclass(frozen=True, kw_only=True)
class TranslateOptions(Options):
    """``translate``: a video file, an image or a folder of images."""

    run: RunOptions = option(default_factory=RunOptions, help=RUN_HELP)
    encode: EncodeOptions = option(default_factory=EncodeOptions, help=ENCODE_HELP)
    preview: Path | bool = option(True, default_text="OUTPUT.preview.png",  # True: beside the output; False: none
                                  help="side-by-side PNG of a few frames")
    progress: bool = progress_option()
    temporal: str = temporal_option()
    deinterlace: Deinterlace = option("auto", help=DEINTERLACE_HELP)
    format: str | None = option(None, metavar="NAME", default_text="mpegts for OUTPUT -, else from the bytes",
                                help="the container of a pipe (`-`): with OUTPUT -, what standard output is "
                                "written as (mpegts or matroska/mkv); with INPUT - only, what standard input "
                                "is read as, when FFmpeg cannot tell it from its bytes")


@dataclass(frozen=True, kw_only=True)
class TranslatorOptions(Options):
    """A :class:`~cyclestream.engine.jobs.frames.Translator`: frames held in memory."""

    run: RunOptions = option(default_factory=RunOptions, help=RUN_HELP)
    temporal: str = temporal_option()  # across the frames of Translator.stream()

    def check(self) -> None:
        if self.run.size is not None:
            raise self.fail("run.size", "frames in memory are translated at their own size; resize them first")


@dataclass(frozen=True, kw_only=True)
class BatchOptions(Options):
    """``batch``: many files, folders and manifests into one output folder, here or on Ray."""

    translate: TranslateOptions = option(default_factory=lambda: TranslateOptions(preview=False, progress=False),
                                         fields=("run", "encode", "temporal", "deinterlace"),
                                         help="each item's translation")
    ray: str | None = option(None, metavar="local|auto|ADDRESS",
                             help="run on Ray: local (a Ray instance on this machine, listening on 127.0.0.1 only), "
                             "auto (the running cluster), HOST:PORT or ray://HOST:PORT; absent: one worker in this "
                             "process.  On a cluster, inputs, --out and --model must be at the same paths on every "
                             "node (a shared file system)")
    workers: int | None = option(None, min=1, default_text="as many as the cluster's CPUs, or GPUs, hold at once",
                                 help="Ray workers")
    cpus_per_worker: float = option(1.0, above=0, help="CPUs each Ray worker reserves, and its torch threads")
    gpus_per_worker: float = option(0.0, min=0, help="GPUs each Ray worker reserves (e.g. 1, or 0.5 to share one); "
                                    "the model then runs on CUDA")
    segment_seconds: float | None = option(None, above=0, metavar="S", help="split videos longer than S seconds at "
                                           "keyframes into segments translated in parallel and joined without "
                                           "re-encoding")
    retries: int = option(3, min=0, help="times a worker that dies is restarted and its item retried")
    container: str | None = option(None, metavar="EXT", help="write videos as EXT (mkv, mp4, ...) instead of the "
                                   "input's")
    progress: bool = progress_option()

    def check(self) -> None:
        if self.ray is None and (self.workers or self.gpus_per_worker):
            raise self.fail("workers", "workers and gpus_per_worker need --ray (ray='local': several workers here)")




@dataclass(frozen=True, kw_only=True)
class StreamOptions(Options):
    """``stream``: one live source through the model into one sink."""

    source: str = option(flag="", help="/dev/video0 | udp://@:5000 | rtsp://... | rtmp://...[?listen] | "
                         "lavfi:testsrc2=size=640x360:rate=30 | FILE")
    sink: str = option("null", flag="", help="null | FILE.ts/.mkv/.mp4 | udp://HOST:PORT | rtmp://...")
    model: Path | None = option(None, flag="", help="generator file")
    run: RunOptions = option(default_factory=RunOptions, help=RUN_HELP)
    encode: EncodeOptions = option(LIVE_ENCODE, fields=("codec", "crf"), help="stream output")
    fps: float | None = option(None, above=0, help="at most this many frames per second (cameras: capture rate)")
    realtime: bool = option(False, help="play a FILE source at its native rate")
    max_latency: float = option(1.0, above=0, help="latency bound in seconds, capture to written")
    reconnect_for: float = option(30.0, min=0, metavar="SECONDS", help="keep reconnecting a lost network source "
                                  "this long (a camera or server rebooting); 0: end at the first loss")
    reconnect_gap: ReconnectGap = option("real-time", help="a reconnection's gap in the recording's timestamps: "
                                         "real-time (kept: the recording follows the clock) or closed (the "
                                         "first frame after it follows the last one before it)")
    read_timeout: float = option(3.0, above=0, help="seconds without data that count as stalled")
    audio: bool = option(True, help="audio passed through from the source (copied beside the video)")
    deinterlace: Deinterlace = option("auto", help=DEINTERLACE_HELP)  # decided at each connection's first frame
    preview: str | None = option(None, metavar="[HOST]:PORT", help="serve a live MJPEG page, e.g. :8080")
    input_format: str | None = option(None, help="camera pixel format for V4L2, e.g. mjpeg or yuyv422")
    duration: float | None = option(None, above=0, help="stop after this many seconds")
    stats_interval: float = option(1.0, min=0, flag="", help="seconds between live statistics lines; 0: none")
    temporal: str = temporal_option()


CompileTarget = Literal["onnx", "openvino", "tensorrt"]
ExporterName = Literal["auto", "dynamo", "torchscript"]
DEFAULT_SHAPE = "1x3x256x256"


@dataclass(frozen=True, kw_only=True)
class CompileOptions(Options):
    """``compile``: export a model for a backend and check it."""

    target: CompileTarget = option(help="what to build")
    precision: Literal["fp32", "fp16", "bf16"] = option(
        "fp32", help="onnx: fp32/fp16; openvino: fp32/fp16 (weights)/bf16 (run time); tensorrt: fp32/fp16")
    shape: str = option(DEFAULT_SHAPE, help="NxCxHxW[:MAX] or MIN:OPT:MAX: the TensorRT profile (batches 1..N; "
                        "sides up to MAX) and the size the result is checked at")
    out: Path | None = option(None, default_text="MODEL.onnx / MODEL.xml / MODEL.engine here", help="output file")
    device: str = option("cuda", help="GPU for --target tensorrt")
    exporter: ExporterName = option("auto", help="ONNX exporter (auto: dynamo, then TorchScript if it fails)")
    cache_dir: Path | None = option(None, flag="", help="export cache folder (default: the user's cache)")
    check_clip: Path | None = option(None, flag="", help="a clip whose frame the result is checked on (the "
                                     "command line passes the bundled demo clip; None: a synthetic frame)")
