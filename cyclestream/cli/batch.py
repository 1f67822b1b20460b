"""The `cyclestream batch` command: many videos and images (or long videos in segments), here or on Ray."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEFAULT_MODEL
from cyclestream.cli.options import (
    add_encode_options,
    add_run_options,
    add_temporal_option,
    int_in,
    positive_float,
    positive_int,
    translate_options,
)

log = logging.getLogger("cyclestream")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        help="translate many videos and images (long videos in parallel segments), here or on a Ray cluster",
        description="Translate files, folders (searched recursively for videos and images) and manifests (.txt, "
        ".list: one path a line, relative to the manifest) into --out, keeping relative names.  A rerun skips "
        "outputs finished with the same model and settings.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="video or image file, folder, or manifest")
    p.add_argument("--out", type=Path, required=True, help="output folder (items keep their relative names)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="generator: an official *_net_G.pth or a cyclestream .safetensors (default: bundled)")
    g = p.add_argument_group("scale out")
    g.add_argument("--ray", metavar="local|auto|ADDRESS",
                   help="run on Ray: local (a Ray instance on this machine), auto (the running cluster), HOST:PORT or "
                   "ray://HOST:PORT; absent: one worker in this process.  On a cluster, inputs, --out and "
                   "--model must be at the same paths on every node (a shared file system)")
    g.add_argument("--workers", type=positive_int,
                   help="Ray workers (default: as many as the cluster's CPUs, or GPUs, hold at once)")
    g.add_argument("--cpus-per-worker", type=positive_float, default=1.0,
                   help="CPUs each Ray worker reserves, and its torch threads (default 1)")
    g.add_argument("--gpus-per-worker", type=positive_float,
                   help="GPUs each Ray worker reserves (e.g. 1, or 0.5 to share one); the model runs on CUDA")
    g.add_argument("--segment-seconds", type=positive_float, metavar="S",
                   help="split videos longer than S seconds at keyframes into segments translated in parallel "
                   "and joined without re-encoding")
    g.add_argument("--retries", type=int_in(0), default=3,
                   help="times a worker that dies is restarted and its item retried (default 3)")
    g.add_argument("--container", metavar="EXT", help="write videos as EXT (mkv, mp4, ...) instead of the input's")
    add_run_options(p)
    add_encode_options(p)
    add_temporal_option(p)
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    from cyclestream.engine.errors import CycleStreamError
    from cyclestream.engine.jobs.batch import BatchFailed, BatchOptions, BatchReport, run_batch

    if args.preview is not None:
        raise CycleStreamError("batch writes no previews (--preview is for translate)")
    if args.ray is None and (args.workers or args.gpus_per_worker):
        raise CycleStreamError("--workers and --gpus-per-worker need --ray (--ray local: several workers here)")
    options = BatchOptions(
        translate=translate_options(args, args.out),
        ray=args.ray,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker or 0.0,
        segment_seconds=args.segment_seconds,
        retries=args.retries,
        container=args.container,
        progress=not args.quiet,
    )

    def show(report: BatchReport) -> None:
        for outcome in report.outcomes:
            for warning in outcome.warnings:
                log.warning("%s: %s", outcome.item.rel, warning)
        for outcome in report.of("failed"):
            log.warning("failed: %s: %s", outcome.item.rel, outcome.reason)
        for line in report.lines():
            print(line)

    try:
        report = run_batch(args.inputs, args.out, args.model, options)
    except BatchFailed as e:
        show(e.report)
        raise
    show(report)
    return 0
