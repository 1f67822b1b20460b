"""The `cyclestream` commands bench: model, pipeline, stream soak, temporal."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEFAULT_MODEL
from cyclestream.cli.options import add_run_options, positive_float, positive_int, run_options

log = logging.getLogger("cyclestream")


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
    m.add_argument("--repeats", type=positive_int, default=3, help="timed runs per configuration (median)")
    m.add_argument("--min-time", type=positive_float, default=1.0, help="seconds per timed run (default 1)")
    m.add_argument("--quick", action="store_true", help="tiny model and sizes: checks the harness in seconds")
    m.add_argument("--json", type=Path, help="write the report as JSON")
    m.add_argument("--plot", type=Path, help="write a PNG bar chart")
    m.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    m.set_defaults(func=_cmd_bench_model)
    pl = kinds.add_parser("pipeline", help="decode / model / encode alone, then overlapped")
    pl.add_argument("--input", type=Path, required=True, help="video file")
    pl.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator (default: bundled)")
    pl.add_argument("--frames", type=positive_int, help="use at most this many frames")
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
    t.add_argument("--frames", type=positive_int, default=60, help="frames per clip (default 60)")
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


def register(sub: Any) -> None:
    _add_bench(sub)
