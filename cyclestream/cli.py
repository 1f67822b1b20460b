"""The `cyclestream` command: parse, build option dataclasses, call one library function, print.

Every CycleStreamError becomes one line on stderr and a non-zero exit; ``--verbose`` adds the
traceback.  Library modules are imported inside the commands, so ``cyclestream --help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("cyclestream")

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
STUDENT_MODEL = ASSETS / "student_model.safetensors"  # distilled from DEFAULT_MODEL: cyclestream distill
DEMO_CLIP = ASSETS / "demo.mp4"


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' → (640, 360)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    if w < 1 or h < 1 or w > 16384 or h > 16384:
        raise argparse.ArgumentTypeError(f"unsupported size {w}x{h}")
    return w, h


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``lo`` to ``hi`` (no upper bound when ``hi`` is None)."""

    def integer(text: str) -> int:
        value = int(text)  # a ValueError: argparse says "invalid integer value: 'TEXT'"
        if value < lo or (hi is not None and value > hi):
            bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return integer


def float_above(lo: float) -> Callable[[str], float]:
    """An argparse type: a finite number greater than ``lo``."""

    def number(text: str) -> float:
        value = float(text)  # a ValueError: argparse says "invalid number value: 'TEXT'"
        if not (math.isfinite(value) and value > lo):
            raise argparse.ArgumentTypeError(f"must be a number greater than {lo:g}, got {text}")
        return value

    return number


_positive = int_in(1)
positive_float = float_above(0)
CRF = int_in(0, 63)  # the widest encoder range (vpx, AV1); x264/x265 (0-51) are checked when the encoder opens


# ----------------------------------------------------------------------------- shared option groups


def add_run_options(p: argparse.ArgumentParser) -> None:
    """How to run the model (translate, demo, stream, bench)."""
    g = p.add_argument_group("model execution")
    g.add_argument(
        "--backend",
        default="auto",
        help="auto (default: TensorRT on a GPU, else the fastest CPU backend installed), eager, compile "
        "(torch.compile), onnxruntime, openvino or tensorrt",
    )
    g.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    g.add_argument("--batch-size", type=_positive, default=1, help="frames per model call (default 1)")
    g.add_argument("--size", type=parse_size, help="scale frames to WxH first (default: keep their size)")
    g.add_argument("--kernels", default="auto", choices=["auto", "triton", "reference", "off"],
                   help="fused instance-norm kernels for --backend eager (auto: Triton on CUDA, off on CPU)")


def run_options(args: argparse.Namespace) -> Any:
    from cyclestream.engine.backends.options import RunOptions

    return RunOptions(args.backend, args.device, args.precision, args.batch_size, args.size, args.kernels)


def add_encode_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video output")
    g.add_argument("--codec", default="libx264", help="video encoder (default libx264; libx265, libvpx-vp9, ...)")
    g.add_argument("--crf", type=CRF, default=18,
                   help="constant quality 0-51 (x264, x265) or 0-63 (vpx, AV1), lower is better (default 18)")
    g.add_argument("--preset", default="medium", help="x264/x265 speed preset (default medium)")
    g.add_argument("--pix-fmt", default="yuv420p", help="output pixel format (default yuv420p)")
    g.add_argument("--preview", type=Path, help="side-by-side PNG path (default: OUTPUT.preview.png)")
    g.add_argument("--no-preview", action="store_true", help="do not write a preview PNG")


def add_temporal_option(p: argparse.ArgumentParser) -> None:
    from cyclestream.engine.temporal import METHODS  # numpy only: --help stays fast

    p.add_argument("--temporal", default="on", choices=METHODS,
                   help="steady video: on (default; = blend: a motion-aware running average where the input "
                   "is still, reset at scene cuts), flow (the same along optical flow; needs OpenCV), off "
                   "(every frame translated on its own)")


def translate_options(args: argparse.Namespace, output: Path) -> Any:
    from cyclestream.engine.jobs.translate import TranslateOptions, default_preview_path
    from cyclestream.engine.media.sinks import EncodeOptions

    preview = None if args.no_preview else (args.preview or default_preview_path(output))
    return TranslateOptions(
        run=run_options(args),
        encode=EncodeOptions(args.codec, args.crf, args.preset, args.pix_fmt),
        preview=preview,
        progress=not args.quiet,
        temporal=args.temporal,
    )


def _check_preview(args: argparse.Namespace, source: Path) -> None:
    """Fail before the work if ``--preview PATH`` is the input or could not be written (it is written
    last; the default path lies beside the output, whose folder the output's own writing checks)."""
    from cyclestream.engine.paths import check_not_input, check_writable

    if args.preview is not None and not args.no_preview:
        check_not_input(source, args.preview)
        check_writable(args.preview, "--preview")


def _print_report(report: Any) -> None:
    for warning in report.warnings:
        log.warning("%s", warning)
    print(f"wrote {report.output} ({report.frames} frames, {report.fps:.2f} frames/s, {report.backend})")
    if report.preview:
        print(f"preview {report.preview}")


# ----------------------------------------------------------------------------- commands


def _add_translate(sub: Any) -> None:
    p = sub.add_parser("translate", help="translate a video file, an image or a folder of images")
    p.add_argument("input", type=Path, help="video file, image, or folder of images")
    p.add_argument("output", type=Path, help="output video file, image, or folder")
    p.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="generator: an official *_net_G.pth or a cyclestream .safetensors (default: bundled)",
    )
    add_run_options(p)
    add_encode_options(p)
    add_temporal_option(p)
    p.set_defaults(func=_cmd_translate)


def _cmd_translate(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.translate import ImagesFailed, translate

    options = translate_options(args, args.output)
    _check_preview(args, args.input)
    try:
        report = translate(args.input, args.output, args.model, options)
    except ImagesFailed as e:  # a folder job: the good images were written; say so, list the failures
        _print_report(e.report)
        raise
    _print_report(report)
    return 0


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="translate the bundled demo clip with the bundled model")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("out/demo_translated.mp4"),
        help="output video (default out/demo_translated.mp4)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator (default: bundled)")
    which.add_argument("--student", action="store_true",
                       help="the bundled real-time student (distilled from the bundled model); runs on OpenVINO "
                       "when it is installed and --backend is auto")
    add_run_options(p)
    add_encode_options(p)
    add_temporal_option(p)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.translate import translate

    if args.student:
        from cyclestream.engine.backends.auto import installed

        args.model = STUDENT_MODEL
        if args.backend == "auto" and args.device in ("cpu", "auto") and installed("openvino"):
            args.backend = "openvino"
    options = translate_options(args, args.output)
    _check_preview(args, DEMO_CLIP)
    print(f"translating the bundled clip {DEMO_CLIP.name} with {args.model.name}")
    _print_report(translate(DEMO_CLIP, args.output, args.model, options))
    return 0


def _add_stream(sub: Any) -> None:
    p = sub.add_parser("stream", help="translate a live camera, network stream or test source with bounded latency")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator (default: bundled)")
    p.add_argument("--source", required=True, action="append",
                   help="/dev/video0 | udp://@:5000 | rtsp://... | rtmp://...[?listen] | "
                   "lavfi:testsrc2=size=640x360:rate=30 | FILE; repeat it to run several streams through one model")
    p.add_argument("--sink", action="append",
                   help="null (default) | FILE.ts/.mkv/.mp4 (recorded under its name, playable even if the job is "
                   "killed) | udp://127.0.0.1:5001 | rtmp://...; with several --source, one --sink each, in order")
    p.add_argument("--preview", metavar="[HOST]:PORT", help="serve a live MJPEG page, e.g. :8080")
    p.add_argument("--fps", type=positive_float, help="at most this many frames per second (cameras: capture rate)")
    p.add_argument("--realtime", action="store_true", help="play a FILE source at its native rate")
    p.add_argument("--input-format", help="camera pixel format for V4L2, e.g. mjpeg or yuyv422")
    p.add_argument("--max-latency", type=positive_float, default=1.0, help="latency bound in seconds (default 1.0)")
    p.add_argument("--reconnect", type=int_in(0), default=3, help="reopen a stalled network source N times (default 3)")
    p.add_argument("--read-timeout", type=positive_float, default=3.0,
                   help="seconds without data = stalled (default 3)")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    p.add_argument("--codec", default="libx264", help="encoder for the sink (default libx264, zero-latency)")
    p.add_argument("--crf", type=CRF, default=23, help="sink quality (default 23)")
    p.add_argument("--stats-json", type=Path, help="also write the summary JSON here")
    add_run_options(p)
    add_temporal_option(p)
    p.set_defaults(func=_cmd_stream)


def _cmd_stream(args: argparse.Namespace) -> int:

    from cyclestream.engine.errors import CycleStreamError
    from cyclestream.engine.jobs.stream import LIVE_ENCODE, StreamInterrupted, StreamOptions, print_summary, run_streams
    from cyclestream.engine.paths import check_writable

    if args.stats_json is not None:
        check_writable(args.stats_json, "--stats-json")
    sinks = args.sink or ["null"] * len(args.source)
    if len(sinks) != len(args.source):
        raise CycleStreamError(f"{len(args.source)} --source but {len(sinks)} --sink: give one --sink per --source "
                               "(null for none), in the same order")
    if len(args.source) > 1 and args.preview:
        raise CycleStreamError("--preview shows one stream: use it with a single --source")
    options = StreamOptions(
        source=args.source[0], sink=sinks[0], model=args.model, run=run_options(args),
        encode=dataclasses.replace(LIVE_ENCODE, codec=args.codec, crf=args.crf),
        fps=args.fps, realtime=args.realtime, max_latency=args.max_latency, reconnect=args.reconnect,
        read_timeout=args.read_timeout, preview=args.preview, duration=args.duration, input_format=args.input_format,
        stats_interval=0 if args.quiet else 1.0, temporal=args.temporal,
    )
    jobs = [dataclasses.replace(options, source=source, sink=sink) for source, sink in zip(args.source, sinks,
                                                                                             strict=True)]
    try:
        reports = run_streams(jobs)
        for report in reports:
            if report.end_reason:
                log.warning("source %s ended: %s; finalized %s with %d frames", report.source, report.end_reason,
                            report.sink, report.stats.frames)
        print_summary(reports[0] if len(reports) == 1 else reports, args.stats_json)
    except StreamInterrupted as e:  # Ctrl-C or SIGTERM before any frame: exit 130 or 143, not an error
        print(f"cyclestream: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # a second Ctrl-C: recordings are kept, never deleted
        recorded = [s for s in sinks if s != "null" and "://" not in s and Path(s).exists()]
        if recorded and not getattr(e, "__notes__", None):
            e.add_note(f"kept {', '.join(recorded)}")
        raise
    return 0


def _add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure throughput: the model alone, the whole video pipeline, or a live soak")
    kinds = p.add_subparsers(dest="bench_kind", required=True, metavar="KIND")
    m = kinds.add_parser("model", help="images/s per backend, precision, batch and frame size")
    m.add_argument("--model", type=Path, help="generator (default: official resnet_9blocks, random weights)")
    m.add_argument("--backends", default="eager", help="comma list, e.g. eager,onnxruntime (default eager)")
    m.add_argument("--precision", default="fp32,bf16", help="comma list (default fp32,bf16)")
    m.add_argument("--batch", default="1", help="comma list of batch sizes (default 1)")
    m.add_argument("--size", default="256", help="comma list: 256, 512, 720p, 1080p, WxH (default 256)")
    m.add_argument("--device", default="cpu")
    m.add_argument("--repeats", type=_positive, default=3, help="timed runs per configuration (median)")
    m.add_argument("--min-time", type=positive_float, default=1.0, help="seconds per timed run (default 1)")
    m.add_argument("--quick", action="store_true", help="tiny model and sizes: checks the harness in seconds")
    m.add_argument("--json", type=Path, help="write the report as JSON")
    m.add_argument("--plot", type=Path, help="write a PNG bar chart")
    m.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    m.set_defaults(func=_cmd_bench_model)
    pl = kinds.add_parser("pipeline", help="decode / model / encode alone, then overlapped")
    pl.add_argument("--input", type=Path, required=True, help="video file")
    pl.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator (default: bundled)")
    pl.add_argument("--frames", type=_positive, help="use at most this many frames")
    pl.add_argument("--json", type=Path, help="write the report as JSON")
    add_run_options(pl)
    pl.set_defaults(func=_cmd_bench_pipeline)
    so = kinds.add_parser("stream", help="soak a live job: memory and open-file slopes, drops, latency")
    so.add_argument("--source", default="lavfi:testsrc2=size=256x256:rate=30",
                    help="live source (default lavfi:testsrc2=size=256x256:rate=30)")
    so.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator (default: bundled)")
    so.add_argument("--duration", type=positive_float, default=60.0, help="seconds to run (default 60)")
    so.add_argument("--interval", type=positive_float, default=1.0, help="seconds between memory samples (default 1)")
    so.add_argument("--max-latency", type=positive_float, default=1.0, help="latency bound in seconds (default 1.0)")
    so.add_argument("--streams", help="comma list such as 1,2,4: instead of a soak, run N copies of --source "
                    "through one shared model and as N separate processes, for --duration each")
    so.add_argument("--json", type=Path, help="write the report as JSON")
    add_run_options(so)
    so.set_defaults(func=_cmd_bench_stream)
    t = kinds.add_parser("temporal", help="flicker and cost of each --temporal method on a clip (with added noise)")
    t.add_argument("--input", type=Path, action="append", required=True, help="video file (repeat for several)")
    t.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator (default: bundled)")
    t.add_argument("--methods", default="off,blend,flow",
                   help="comma list of --temporal methods, plus ema-stats (instance-norm statistics averaged "
                   "across frames, measured here only) (default off,blend,flow; flow needs OpenCV)")
    t.add_argument("--noise", default="0,3", help="comma list of added noise σ in levels (default 0,3)")
    t.add_argument("--frames", type=_positive, default=60, help="frames per clip (default 60)")
    t.add_argument("--json", type=Path, help="write the reports as JSON")
    t.add_argument("--markdown", action="store_true", help="print a Markdown table")
    t.add_argument("--picture", type=Path, help="PNG: consecutive frames of the first clip, each method, and "
                   "their frame-to-frame change x8")
    add_run_options(t)
    t.set_defaults(func=_cmd_bench_temporal)


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    from cyclestream.engine.atomic import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def _cmd_bench_model(args: argparse.Namespace) -> int:
    from cyclestream.engine.checkpoint import LoadedModel, load_model
    from cyclestream.engine.jobs.bench import bench_model, parse_bench_size
    from cyclestream.engine.jobs.bench_report import model_markdown, model_plot, model_table
    from cyclestream.engine.models import GeneratorSpec, build_generator

    if args.model is not None:
        model = load_model(args.model)
    else:
        spec = GeneratorSpec(ngf=8, n_blocks=2) if args.quick else GeneratorSpec()
        model = LoadedModel(build_generator(spec).eval(), spec, Path(spec.official_name), "random")
    sizes = [parse_bench_size(s) for s in ("64" if args.quick else args.size).split(",")]
    report = bench_model(
        model, args.backends.split(","), args.precision.split(","), [int(b) for b in args.batch.split(",")],
        sizes, args.device, warmup=1, repeats=1 if args.quick else args.repeats,
        min_time=0.05 if args.quick else args.min_time, progress=not args.quiet,
    )
    print(model_table(report))
    if args.markdown:
        print()
        print(model_markdown(report))
    _write_json(args.json, report.to_json())
    if args.plot:
        print(f"wrote {model_plot(report, args.plot)}")
    return 0


def _cmd_bench_temporal(args: argparse.Namespace) -> int:

    from cyclestream.engine.backends.options import prepare_backend
    from cyclestream.engine.checkpoint import load_model
    from cyclestream.engine.jobs.bench_temporal import (
        STATS_LEVER,
        add_noise,
        bench_temporal,
        format_table,
        read_frames,
        temporal_picture,
    )

    model, run = load_model(args.model), run_options(args)
    methods = args.methods.split(",")
    noise = [float(x) for x in args.noise.split(",")]
    reports = [r for clip in args.input
               for r in bench_temporal(clip, model, run, methods, noise, args.frames, progress=not args.quiet)]
    print(format_table(reports, markdown=args.markdown))
    _write_json(args.json, {"reports": [r.to_json() for r in reports]})
    if args.picture:
        frames = add_noise(read_frames(args.input[0], 5, run.size), max(noise))
        h, w = frames[0].shape[:2]
        backend = prepare_backend(model, dataclasses.replace(run, batch_size=1), h, w)
        try:
            shown = [m for m in methods if m != STATS_LEVER]
            print(f"wrote {temporal_picture(frames, shown, backend, args.picture)}")
        finally:
            backend.close()
    return 0


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from cyclestream.engine.checkpoint import load_model
    from cyclestream.engine.jobs.bench import bench_pipeline
    from cyclestream.engine.jobs.bench_report import pipeline_table
    from cyclestream.engine.media.sinks import EncodeOptions

    report = bench_pipeline(args.input, load_model(args.model), run_options(args), EncodeOptions(),
                            args.frames, progress=not args.quiet)
    print(pipeline_table(report))
    _write_json(args.json, report.to_json())
    return 0


def _cmd_bench_stream(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.soak import soak_stream
    from cyclestream.engine.jobs.stream import StreamOptions

    options = StreamOptions(source=args.source, model=args.model, run=run_options(args), duration=args.duration,
                            max_latency=args.max_latency, stats_interval=0)
    if args.streams:
        from cyclestream.engine.jobs.bench_streams import bench_streams, streams_json, streams_table

        rows = bench_streams(args.source, args.model, options.run, [int(n) for n in args.streams.split(",")],
                             args.duration, args.max_latency)
        print(streams_table(rows))
        _write_json(args.json, streams_json(rows))
        return 0
    report = soak_stream(options, args.interval)
    print(report.table())
    _write_json(args.json, report.to_json())
    return 0


def _add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a model file (architecture, domains, provenance)")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from cyclestream.engine.checkpoint import load_model

    model = load_model(args.model)
    info = {
        "path": str(model.path),
        "format": model.format,
        "architecture": model.spec.official_name,
        "generator": model.spec.to_dict(),
        "parameters": model.parameter_count,
        "size_multiple": model.spec.size_multiple,
        "metadata": {k: v for k, v in model.metadata.items() if k != "generator"},
    }
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(
        f"{model.path}: {model.format} model, {model.spec.official_name}, "
        f"{model.parameter_count / 1e6:.2f} M parameters"
    )
    for key, value in model.spec.to_dict().items():
        print(f"  {key:13} {value}")
    print(f"  {'frame sides':13} padded to a multiple of {model.spec.size_multiple}")
    for key, value in info["metadata"].items():
        print(f"  {key:13} {json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0


def _add_compile(sub: Any) -> None:
    p = sub.add_parser("compile", help="export a model for a backend (ONNX, OpenVINO IR, TensorRT engine) and check it")
    p.add_argument("model", type=Path, help="generator: an official *_net_G.pth or a cyclestream .safetensors")
    p.add_argument("--target", required=True, choices=["onnx", "openvino", "tensorrt"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="onnx: fp32/fp16; openvino: fp32/fp16 (weights)/bf16 (run time); tensorrt: fp32/fp16")
    p.add_argument("--shape", default="1x3x256x256",
                   help="NxCxHxW[:MAX] or MIN:OPT:MAX — the TensorRT profile (batches 1..N; sides up to MAX) "
                   "and the size the result is checked at (default 1x3x256x256)")
    p.add_argument("--out", type=Path, help="output file (default: MODEL.onnx / MODEL.xml / MODEL.engine here)")
    p.add_argument("--device", default="cuda", help="GPU for --target tensorrt (default cuda)")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "torchscript"],
                   help="ONNX exporter (default auto: dynamo, then TorchScript if it fails)")
    p.set_defaults(func=_cmd_compile)


def _cmd_compile(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.compile import CompileOptions, compile_model

    options = CompileOptions(args.target, args.precision, args.shape, args.out, args.device, args.exporter)
    report = compile_model(args.model, options)
    print(f"wrote {report.path} ({report.target}, {report.seconds:.1f} s)")
    for line in report.details:
        print(f"  {line}")
    return 0


# ----------------------------------------------------------------------------- data and evaluation

EMOJI_STYLES = ("twemoji", "noto", "openmoji")


def _add_data(sub: Any) -> None:
    p = sub.add_parser("data", help="build data: a two-style emoji dataset, the demo clip")
    kinds = p.add_subparsers(dest="data_command", required=True, metavar="KIND")
    e = kinds.add_parser("emoji", help="unpaired emoji dataset in two styles (trainA/B shuffled, testA/B paired)")
    e.add_argument("--from", dest="source", choices=EMOJI_STYLES, default="openmoji",
                   help="domain A style (default openmoji, the bundled model's input)")
    e.add_argument("--to", dest="target", choices=EMOJI_STYLES, default="twemoji",
                   help="domain B style (default twemoji)")
    e.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    e.add_argument("--size", type=_positive, default=128, help="square image side in pixels (default 128)")
    e.add_argument("--test-fraction", type=float, default=0.1, help="share of emoji held out as pairs (default 0.1)")
    e.add_argument("--seed", type=int, default=0, help="seed of the split and shuffles (default 0)")
    e.add_argument("--limit", type=_positive, help="use at most N emoji (small datasets for tests)")
    e.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    e.set_defaults(func=_cmd_data_emoji)
    c = kinds.add_parser("demo-clip", help="render the demo clip: moving emoji with a sound track")
    c.add_argument("--out", type=Path, default=DEMO_CLIP, help=f"output .mp4 (default {DEMO_CLIP})")
    c.add_argument("--style", choices=EMOJI_STYLES, default="openmoji",
                   help="emoji style (default openmoji, what the bundled model translates from)")
    c.add_argument("--seconds", type=float, default=6.0, help="length (default 6)")
    c.add_argument("--size", type=parse_size, default=(256, 256), help="WxH, even sides (default 256x256)")
    c.add_argument("--fps", type=_positive, default=12, help="frames per second (default 12)")
    c.add_argument("--crf", type=int_in(0, 51), default=23, help="x264 constant quality 0-51 (default 23)")
    c.set_defaults(func=_cmd_data_demo_clip)


def _cmd_data_emoji(args: argparse.Namespace) -> int:
    from cyclestream.trainer.datasets.emoji import EmojiDatasetOptions, build_emoji_dataset

    options = EmojiDatasetOptions(args.source, args.target, args.size, args.test_fraction, args.seed,
                                  args.limit, args.overwrite, progress=not args.quiet)
    report = build_emoji_dataset(args.out, options)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    print(f"wrote {report.out} ({args.source} → {args.target}, {args.size}x{args.size}: {counts}; "
          f"{report.skipped_skin_tones} skin-tone variants skipped; {report.seconds:.1f} s)")
    return 0


def _cmd_data_demo_clip(args: argparse.Namespace) -> int:
    from cyclestream.trainer.datasets.demo_clip import DemoClipOptions, make_demo_clip

    report = make_demo_clip(args.out, DemoClipOptions(args.style, args.seconds, args.size, args.fps, args.crf))
    print(f"wrote {report.path} ({report.size[0]}x{report.size[1]}, {report.frames} frames at {report.fps} fps, "
          f"{report.seconds:.1f} s, {report.bytes / 1024:.0f} KiB)")
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a model on a dataset's held-out pairs (PSNR, SSIM vs identity)")
    p.add_argument("model", type=Path, help="generator: an official *_net_G.pth or a cyclestream .safetensors")
    p.add_argument("--data", type=Path, required=True, help="dataset folder with testA/ and testB/")
    p.add_argument("--out", type=Path, help="comparison grid PNG (default out/MODEL_eval.png)")
    p.add_argument("--no-grid", action="store_true", help="do not write the grid")
    p.add_argument("--examples", type=_positive, default=8, help="pairs shown in the grid (default 8)")
    p.add_argument("--limit", type=_positive, help="score only the first N pairs (by name)")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB",
                   help="AtoB: translate testA, compare with testB (default); BtoA the reverse")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_run_options(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cyclestream.trainer.evaluate import EvaluateOptions, evaluate, format_report

    grid = None if args.no_grid else (args.out or Path("out") / f"{args.model.stem}_eval.png")
    options = EvaluateOptions(run_options(args), args.direction, args.limit, grid, args.examples,
                              progress=not (args.quiet or args.json))
    report = evaluate(args.model, args.data, options)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


# ----------------------------------------------------------------------------- training


def _add_train(sub: Any) -> None:
    from cyclestream.trainer.options import add_train_arguments  # torch-free: --help stays fast

    p = sub.add_parser("train", help="train CycleGAN (unpaired A/B folders), pix2pix or DCGAN; --resume continues",
                       description="Train a model; the run folder (--out) gets G_A/G_B.safetensors (what translate "
                                   "--model loads), state.pt (for --resume), samples/, log.jsonl and losses.png. "
                                   "Several processes: --nproc N, or torchrun --standalone --nproc_per_node=N "
                                   "-m cyclestream.trainer ...")
    add_train_arguments(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from cyclestream.engine.signals import exit_code, interrupted
    from cyclestream.trainer.loop import train
    from cyclestream.trainer.options import options_from_args

    try:
        result = train(options_from_args(args, progress=not args.quiet))
    except KeyboardInterrupt as e:
        print(f"cyclestream: {interrupted(e)}; continue from the last checkpoint with --resume --out {args.out}",
              file=sys.stderr)
        return exit_code(e)
    state = "finished" if result.finished else f"stopped (continue with --resume --out {result.run_dir})"
    print(f"{state} at epoch {result.position.epoch}, iteration {result.position.iteration}: "
          f"{', '.join(str(f) for f in result.files) or result.run_dir}")
    return 0


def _add_distill(sub: Any) -> None:
    from cyclestream.trainer.distill_cli import add_distill_arguments

    p = sub.add_parser("distill", help="distil a generator into a small, fast student (GAN Compression); "
                       "--resume continues")
    add_distill_arguments(p)
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    from cyclestream.trainer.distill_cli import run_distill
    from cyclestream.trainer.distill_eval import format_evaluation

    out = run_distill(args, progress=not args.quiet)
    result = out["result"]
    state = "finished" if result.finished else f"stopped (continue with --resume --out {result.run_dir})"
    print(f"{state} at epoch {result.position.epoch}, iteration {result.position.iteration}: {out['student']}")
    if out["evaluation"] is not None:
        print(format_evaluation(out["evaluation"]))
    return 0


# ----------------------------------------------------------------------------- entry point

COMMANDS: list[Callable[[Any], None]] = [
    _add_translate,
    _add_demo,
    _add_stream,
    _add_bench,
    _add_info,
    _add_compile,
    _add_data,
    _add_evaluate,
    _add_train,
    _add_distill,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cyclestream",
        description="Real-time CycleGAN translation of video files, images and live streams.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


NON_TTY_PROGRESS_SECONDS = "15"  # progress bars written to a log file or CI: a line every 15 s, not every update


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", NON_TTY_PROGRESS_SECONDS)  # tqdm reads TQDM_* defaults
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="cyclestream: %(levelname)s: %(message)s" if args.verbose else "cyclestream: %(message)s",
    )
    from cyclestream.engine.errors import CycleStreamError
    from cyclestream.engine.signals import exit_code, interrupted, terminate_as_interrupt

    # SIGTERM and SIGHUP unwind a job like Ctrl-C; stream instead finishes its output on them (engine/jobs/stream.py).
    signals = contextlib.nullcontext() if args.command == "stream" else terminate_as_interrupt()
    try:
        with signals:
            return int(args.func(args) or 0)
    except CycleStreamError as e:
        if args.verbose:
            raise
        print(f"cyclestream: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # exit 128 + the signal's number: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
        done = "; ".join(getattr(e, "__notes__", ())) or "no output was left behind"  # a job's note: what it wrote
        print(f"cyclestream: {interrupted(e)}; {done}", file=sys.stderr)
        return exit_code(e)
    except Exception as e:  # a bug or an unforeseen library error: still one line unless --verbose
        if args.verbose:
            raise
        if isinstance(e, OSError) and e.filename is not None:  # permission denied, disk full, ...: the user's to fix
            print(f"cyclestream: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 2
        print(
            f"cyclestream: error: unexpected {type(e).__name__}: {e} (run with --verbose for details)", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
