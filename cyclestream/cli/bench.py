"""The `cyclestream` commands bench: model, pipeline, stream soak, temporal, serve, train.

The options are generated from ``engine/jobs/bench_options.py``; the flags here are the inputs and the
outputs only (--input, --model, --source, --json, --plot, --markdown, --picture)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from cyclestream.cli.flags import add_options, from_args
from cyclestream.cli.options import add_model_argument

log = logging.getLogger("cyclestream")


def _add_bench(sub: Any) -> None:
    from cyclestream.engine.jobs.bench_options import (
        ModelBenchOptions,
        PipelineBenchOptions,
        ServeBenchOptions,
        StreamBenchOptions,
        TemporalBenchOptions,
    )

    p = sub.add_parser("bench", help="measure throughput: the model alone, the whole video pipeline, or a live soak")
    kinds = p.add_subparsers(dest="bench_kind", required=True, metavar="KIND")
    m = kinds.add_parser("model", help="images/s per backend, precision, batch and frame size")
    m.add_argument("--model", type=Path, help="generator (default: official resnet_9blocks, random weights)")
    add_options(m, ModelBenchOptions)
    m.add_argument("--json", type=Path, help="write the report as JSON")
    m.add_argument("--plot", type=Path, help="write a PNG bar chart")
    m.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    m.set_defaults(func=_cmd_bench_model)
    pl = kinds.add_parser("pipeline", help="decode / model / encode alone, then overlapped")
    pl.add_argument("--input", type=Path, required=True, help="video file")
    add_model_argument(pl)
    add_options(pl, PipelineBenchOptions)
    pl.add_argument("--json", type=Path, help="write the report as JSON")
    pl.set_defaults(func=_cmd_bench_pipeline)
    so = kinds.add_parser("stream", help="soak a live job: memory and open-file slopes, drops, latency")
    so.add_argument("--source", default=StreamBenchOptions().stream.source, help="live source (default %(default)s)")
    add_model_argument(so)
    add_options(so, StreamBenchOptions)
    so.add_argument("--json", type=Path, help="write the report as JSON")
    so.set_defaults(func=_cmd_bench_stream)
    t = kinds.add_parser("temporal", help="flicker and cost of each --temporal method on a clip (with added noise)")
    t.add_argument("--input", type=Path, action="append", required=True, help="video file (repeat for several)")
    add_model_argument(t)
    add_options(t, TemporalBenchOptions)
    t.add_argument("--json", type=Path, help="write the reports as JSON")
    t.add_argument("--markdown", action="store_true", help="print a Markdown table")
    t.add_argument("--picture", type=Path, help="PNG: consecutive frames of the first clip, each method, and "
                   "their frame-to-frame change x8")
    t.set_defaults(func=_cmd_bench_temporal)
    sv = kinds.add_parser("serve", help="a running `serve` from a WebRTC client: frames/s, round trip, PSNR")
    sv.add_argument("url", help="the page's address as the server printed it, e.g. http://127.0.0.1:8080/#token=…")
    add_model_argument(sv)
    add_options(sv, ServeBenchOptions)
    sv.add_argument("--json", type=Path, help="also write the results as JSON")
    sv.set_defaults(func=_cmd_bench_serve)
    from cyclestream.trainer.bench_options import TrainBenchOptions

    tr = kinds.add_parser("train", help="s/iteration and peak memory of each training mode (precision, compile, "
                          "layout) against the exact eager fp32 step; recorded for train's auto")
    add_options(tr, TrainBenchOptions)
    tr.add_argument("--json", type=Path, help="write the report as JSON")
    tr.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    tr.set_defaults(func=_cmd_bench_train)


def _check_outputs(args: argparse.Namespace, *names: str) -> None:
    """Fail before the work if an output asked for (--json, --plot, --picture) could not be written."""
    from cyclestream.engine.paths import check_writable

    for name in names:
        path = getattr(args, name)
        if path is not None:
            check_writable(path, f"--{name}")


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    from cyclestream.engine.atomic import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def _cmd_bench_model(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.bench import bench_model_file
    from cyclestream.engine.jobs.bench_options import ModelBenchOptions
    from cyclestream.engine.jobs.bench_report import model_markdown, model_plot, model_table

    options = from_args(ModelBenchOptions, args, progress=not args.quiet)
    _check_outputs(args, "json", "plot")
    report = bench_model_file(args.model, options=options)
    print(model_table(report))
    if args.markdown:
        print()
        print(model_markdown(report))
    _write_json(args.json, report.to_json())
    if args.plot:
        print(f"wrote {model_plot(report, args.plot)}")
    return 0


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.bench import bench_pipeline_file
    from cyclestream.engine.jobs.bench_options import PipelineBenchOptions
    from cyclestream.engine.jobs.bench_report import pipeline_table

    options = from_args(PipelineBenchOptions, args, progress=not args.quiet)
    _check_outputs(args, "json")
    report = bench_pipeline_file(args.input, args.model, options=options)
    print(pipeline_table(report))
    _write_json(args.json, report.to_json())
    return 0


def _cmd_bench_stream(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.bench_options import StreamBenchOptions
    from cyclestream.engine.jobs.bench_streams import bench_stream

    options = from_args(StreamBenchOptions, args, source=args.source, model=args.model)
    _check_outputs(args, "json")
    report = bench_stream(options)
    print(report.table())
    _write_json(args.json, report.to_json())
    return 0


def _cmd_bench_temporal(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.bench_options import TemporalBenchOptions
    from cyclestream.engine.jobs.bench_temporal import bench_temporal_files

    options = from_args(TemporalBenchOptions, args, progress=not args.quiet)
    _check_outputs(args, "json", "picture")
    bench = bench_temporal_files(args.input, args.model, options=options, picture=args.picture)
    print(bench.table(markdown=args.markdown))
    _write_json(args.json, bench.to_json())
    if bench.picture is not None:
        print(f"wrote {bench.picture}")
    return 0


def _cmd_bench_serve(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.bench_options import ServeBenchOptions
    from cyclestream.engine.serve.probe import probe

    _check_outputs(args, "json")
    results = probe(args.url, args.model, options=from_args(ServeBenchOptions, args))
    rows = [dataclasses.asdict(r) for r in results]
    print(json.dumps(rows, indent=2))
    _write_json(args.json, {"results": rows})
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from cyclestream.trainer.bench import bench_train, markdown, table
    from cyclestream.trainer.bench_options import TrainBenchOptions

    options = from_args(TrainBenchOptions, args, progress=not args.quiet)
    _check_outputs(args, "json")
    report = bench_train(options)
    print(table(report))
    if args.markdown:
        print()
        print(markdown(report))
    _write_json(args.json, report.to_json())
    return 0


def register(sub: Any) -> None:
    _add_bench(sub)
